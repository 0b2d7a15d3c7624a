/**
 * docker_service attributes the engine sets on its own and the provider reads back though the stack never writes
 * them: the image's platforms, which the engine resolves from the image's manifest and writes into the placement.
 * Left out of `ignore_changes`, every plan after an apply would show their removal as a change.
 */
export const ENGINE_SET_SERVICE_ATTRIBUTES: readonly string[] = ['task_spec[0].placement[0].platforms'];
