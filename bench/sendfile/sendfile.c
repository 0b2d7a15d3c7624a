/*
 * sendFile(outFd, inFd, offset, count, callback(err, sent)): sendfile(2) of a file range to a socket, on the libuv
 * threadpool. The socket is non-blocking (Node's): on EAGAIN the thread waits in poll(2) until it is writable again.
 * Bench-only prototype (bench/sendfile/preload.js, issue 20).
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <node_api.h>

typedef struct {
  int out, in;
  off_t offset;
  size_t count, sent;
  int error;
  napi_async_work work;
  napi_ref callback;
} job_t;

static void execute(napi_env env, void *data) {
  job_t *j = data;
  (void)env;
  while (j->sent < j->count) {
    ssize_t n = sendfile(j->out, j->in, &j->offset, j->count - j->sent);
    if (n > 0) { j->sent += (size_t)n; continue; }
    if (n == 0) { j->error = EPIPE; return; } /* the file is shorter than asked */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) { j->error = errno; return; }
    struct pollfd p = { .fd = j->out, .events = POLLOUT };
    int r = poll(&p, 1, 60000);
    if (r == 0) { j->error = ETIMEDOUT; return; }
    if (r < 0 && errno != EINTR) { j->error = errno; return; }
    if (r > 0 && (p.revents & (POLLERR | POLLHUP | POLLNVAL))) { j->error = EPIPE; return; }
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *j = data;
  napi_value cb, undef, args[2];
  napi_get_reference_value(env, j->callback, &cb);
  napi_get_undefined(env, &undef);
  if (j->error || status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, strerror(j->error ? j->error : EIO), NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &args[0]);
  } else {
    napi_get_null(env, &args[0]);
  }
  napi_create_double(env, (double)j->sent, &args[1]);
  napi_call_function(env, undef, cb, 2, args, NULL);
  napi_delete_reference(env, j->callback);
  napi_delete_async_work(env, j->work);
  free(j);
}

static napi_value send_file(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], name;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  job_t *j = calloc(1, sizeof *j);
  int64_t offset, count;
  napi_get_value_int32(env, argv[0], &j->out);
  napi_get_value_int32(env, argv[1], &j->in);
  napi_get_value_int64(env, argv[2], &offset);
  napi_get_value_int64(env, argv[3], &count);
  j->offset = (off_t)offset;
  j->count = (size_t)count;
  napi_create_reference(env, argv[4], 1, &j->callback);
  napi_create_string_utf8(env, "sendFile", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, j, &j->work);
  napi_queue_async_work(env, j->work);
  return NULL;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "sendFile", NAPI_AUTO_LENGTH, send_file, NULL, &fn);
  napi_set_named_property(env, exports, "sendFile", fn);
  return exports;
}
