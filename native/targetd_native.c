/*
 * targetd_native: the few Linux file syscalls Node does not expose (hole punching, allocation, SEEK_DATA /
 * SEEK_HOLE, copy_file_range, flock, ftruncate up to 2^53, non-blocking cached reads), as a plain C N-API addon.
 *
 * Blocking calls run on the libuv threadpool (napi_create_async_work) and settle a Promise, so a slow disk
 * never stalls the event loop. Failures reject with an Error shaped like Node's own fs errors (`code` is the
 * errno name, `errno` the negated errno, `syscall` the call), so callers can treat both the same way.
 */
#include <node_api.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/falloc.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/uio.h>
#include <unistd.h>

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* Offsets and lengths travel as JS numbers; beyond 2^53 they would silently lose precision. */
#define MAX_SAFE_INT 9007199254740992.0

typedef enum {
  OP_PUNCH_HOLE,
  OP_FALLOCATE,
  OP_SEEK_DATA,
  OP_SEEK_HOLE,
  OP_COPY_RANGE,
  OP_DATA_EXTENTS,
  OP_COPY_RANGES,
  OP_FTRUNCATE
} op_kind;

typedef struct {
  op_kind op;
  int fd_in;
  int fd_out;
  int64_t off_in;
  int64_t off_out;
  int64_t len;
  int64_t result;
  int err; /* 0, or the errno of the failed call */
  /* OP_DATA_EXTENTS output / OP_COPY_RANGES input: flat [start, end) pairs, owned by the job. */
  double *ranges;
  size_t nranges;
  size_t max_ranges;
  const char *syscall;
  napi_deferred deferred;
  napi_async_work work;
} job_t;

/* A failed napi_* call means a bug or an exhausted VM; surface it as a JS exception rather than crash. */
#define NAPI_CALL(env, call)                                              \
  do {                                                                    \
    if ((call) != napi_ok) {                                              \
      bool pending_ = false;                                              \
      napi_is_exception_pending((env), &pending_);                        \
      if (!pending_) napi_throw_error((env), NULL, "N-API call failed: " #call); \
      return NULL;                                                        \
    }                                                                     \
  } while (0)

static const char *errno_name(int err) {
  const char *name = strerrorname_np(err);
  return name != NULL ? name : "EUNKNOWN";
}

static napi_value make_errno_error(napi_env env, int err, const char *syscall) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s, %s", errno_name(err), strerror(err), syscall);
  napi_value code, message, error, errno_value, syscall_value;
  if (napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message) != napi_ok ||
      napi_create_error(env, code, message, &error) != napi_ok)
    return NULL;
  if (napi_create_int32(env, -err, &errno_value) == napi_ok)
    napi_set_named_property(env, error, "errno", errno_value);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &syscall_value) == napi_ok)
    napi_set_named_property(env, error, "syscall", syscall_value);
  return error;
}

static bool arg_fd(napi_env env, napi_value v, const char *what, int *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      d != floor(d) || d < 0 || d > INT_MAX) {
    char msg[128];
    snprintf(msg, sizeof msg, "'%s' must be a file descriptor (a non-negative integer)", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *out = (int)d;
  return true;
}

static bool arg_i64(napi_env env, napi_value v, const char *what, int64_t *out) {
  napi_valuetype t;
  double d;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number || napi_get_value_double(env, v, &d) != napi_ok ||
      d != floor(d) || d < 0 || d > MAX_SAFE_INT) {
    char msg[128];
    snprintf(msg, sizeof msg, "'%s' must be an integer between 0 and 2^53", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

static bool arg_bool(napi_env env, napi_value v, const char *what, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean || napi_get_value_bool(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "'%s' must be a boolean", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  if (argc < want) {
    char msg[64];
    snprintf(msg, sizeof msg, "expected %zu arguments, got %zu", want, argc);
    napi_throw_type_error(env, "ERR_MISSING_ARGS", msg);
    return false;
  }
  return true;
}

/* Runs on a threadpool thread: no N-API calls allowed here. */
static void job_execute(napi_env env, void *data) {
  job_t *job = data;
  int rc;
  off_t pos;
  job->err = 0;
  switch (job->op) {
    case OP_PUNCH_HOLE:
    case OP_FALLOCATE: {
      int mode = job->op == OP_PUNCH_HOLE ? FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE : 0;
      do rc = fallocate(job->fd_in, mode, (off_t)job->off_in, (off_t)job->len);
      while (rc < 0 && errno == EINTR);
      if (rc < 0) job->err = errno;
      break;
    }
    case OP_FTRUNCATE:
      do rc = ftruncate(job->fd_in, (off_t)job->len);
      while (rc < 0 && errno == EINTR);
      if (rc < 0) job->err = errno;
      break;
    case OP_SEEK_DATA:
    case OP_SEEK_HOLE:
      pos = lseek(job->fd_in, (off_t)job->off_in, job->op == OP_SEEK_DATA ? SEEK_DATA : SEEK_HOLE);
      if (pos >= 0) {
        job->result = (int64_t)pos;
      } else if (errno == ENXIO) {
        /* ENXIO is the ordinary "no more data / offset past EOF" answer, not a failure. */
        job->result = -1;
      } else {
        job->err = errno;
      }
      break;
    case OP_COPY_RANGE: {
      /* The kernel may copy less than asked (it caps one call near 2 GiB); loop here so one JS call costs
       * one threadpool round trip, and stop early only at end of input. */
      loff_t in = (loff_t)job->off_in, out = (loff_t)job->off_out;
      int64_t done = 0;
      while (done < job->len) {
        ssize_t n = copy_file_range(job->fd_in, &in, job->fd_out, &out, (size_t)(job->len - done), 0);
        if (n < 0) {
          if (errno == EINTR) continue;
          job->err = errno;
          break;
        }
        if (n == 0) break;
        done += n;
      }
      job->result = done;
      break;
    }
    case OP_DATA_EXTENTS: {
      /* Walking a fragmented file one lseek per JS call costs a threadpool hop per extent (measured ~7x
       * slower than cp on 16 k extents); here a whole batch of extents costs one hop. */
      off_t off = (off_t)job->off_in;
      while (job->nranges < job->max_ranges) {
        off_t start = lseek(job->fd_in, off, SEEK_DATA);
        if (start < 0) {
          if (errno != ENXIO) job->err = errno;
          break;
        }
        off_t end = lseek(job->fd_in, start, SEEK_HOLE);
        if (end < 0) {
          job->err = errno;
          break;
        }
        job->ranges[2 * job->nranges] = (double)start;
        job->ranges[2 * job->nranges + 1] = (double)end;
        job->nranges++;
        off = end;
      }
      break;
    }
    case OP_COPY_RANGES: {
      int64_t done = 0;
      for (size_t i = 0; i < job->nranges && job->err == 0; i++) {
        loff_t in = (loff_t)job->ranges[2 * i], out = in;
        int64_t left = (int64_t)job->ranges[2 * i + 1] - (int64_t)in;
        while (left > 0) {
          ssize_t n = copy_file_range(job->fd_in, &in, job->fd_out, &out, (size_t)left, 0);
          if (n < 0) {
            if (errno == EINTR) continue;
            job->err = errno;
            break;
          }
          if (n == 0) {
            /* Input ended (it shrank under us): nothing further to copy in any later range either. */
            i = job->nranges;
            break;
          }
          done += n;
          left -= n;
        }
      }
      job->result = done;
      break;
    }
  }
}

static void free_job(job_t *job) {
  free(job->ranges);
  free(job);
}

static void job_complete(napi_env env, napi_status status, void *data) {
  job_t *job = data;
  napi_value value = NULL;
  if (status != napi_ok) {
    napi_value msg;
    napi_create_string_utf8(env, "native job was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &value);
    napi_reject_deferred(env, job->deferred, value);
  } else if (job->err != 0) {
    value = make_errno_error(env, job->err, job->syscall);
    napi_reject_deferred(env, job->deferred, value);
  } else {
    if (job->op == OP_PUNCH_HOLE || job->op == OP_FALLOCATE || job->op == OP_FTRUNCATE) {
      napi_get_undefined(env, &value);
    } else if (job->op == OP_DATA_EXTENTS) {
      napi_value buffer;
      void *bytes;
      size_t n = 2 * job->nranges;
      if (napi_create_arraybuffer(env, n * sizeof(double), &bytes, &buffer) == napi_ok &&
          napi_create_typedarray(env, napi_float64_array, n, buffer, 0, &value) == napi_ok) {
        if (n > 0) memcpy(bytes, job->ranges, n * sizeof(double));
      } else {
        value = NULL;
      }
    } else {
      napi_create_double(env, (double)job->result, &value);
    }
    if (value != NULL) {
      napi_resolve_deferred(env, job->deferred, value);
    } else {
      napi_value msg;
      napi_create_string_utf8(env, "out of memory building the result", NAPI_AUTO_LENGTH, &msg);
      napi_create_error(env, NULL, msg, &value);
      napi_reject_deferred(env, job->deferred, value);
    }
  }
  napi_delete_async_work(env, job->work);
  free_job(job);
}

static napi_value queue_job(napi_env env, job_t *job) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &job->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, job->syscall, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, job_execute, job_complete, job, &job->work) != napi_ok) {
    free_job(job);
    napi_throw_error(env, NULL, "could not create native async work");
    return NULL;
  }
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    free_job(job);
    napi_throw_error(env, NULL, "could not queue native async work");
    return NULL;
  }
  return promise;
}

static job_t *new_job(napi_env env, op_kind op, const char *syscall) {
  job_t *job = calloc(1, sizeof *job);
  if (job == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->op = op;
  job->syscall = syscall;
  job->fd_out = -1;
  return job;
}

/* (fd, offset, length) -> Promise<void>, shared by punchHole and fallocate. */
static napi_value fallocate_common(napi_env env, napi_callback_info info, op_kind op) {
  napi_value argv[3];
  int fd;
  int64_t off, len;
  if (!get_args(env, info, 3, argv) || !arg_fd(env, argv[0], "fd", &fd) ||
      !arg_i64(env, argv[1], "offset", &off) || !arg_i64(env, argv[2], "length", &len))
    return NULL;
  job_t *job = new_job(env, op, "fallocate");
  if (job == NULL) return NULL;
  job->fd_in = fd;
  job->off_in = off;
  job->len = len;
  return queue_job(env, job);
}

static napi_value punch_hole(napi_env env, napi_callback_info info) {
  return fallocate_common(env, info, OP_PUNCH_HOLE);
}

static napi_value do_fallocate(napi_env env, napi_callback_info info) {
  return fallocate_common(env, info, OP_FALLOCATE);
}

/* (fd, length) -> Promise<void>. Node's own ftruncate stops at 2^53 - 1; volume sizes may be exactly 2^53,
 * and then the filesystem, not the binding, should decide (EFBIG on ext4, fine on xfs). */
static napi_value do_ftruncate(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  int fd;
  int64_t len;
  if (!get_args(env, info, 2, argv) || !arg_fd(env, argv[0], "fd", &fd) || !arg_i64(env, argv[1], "length", &len))
    return NULL;
  job_t *job = new_job(env, OP_FTRUNCATE, "ftruncate");
  if (job == NULL) return NULL;
  job->fd_in = fd;
  job->len = len;
  return queue_job(env, job);
}

static napi_value seek_common(napi_env env, napi_callback_info info, op_kind op) {
  napi_value argv[2];
  int fd;
  int64_t off;
  if (!get_args(env, info, 2, argv) || !arg_fd(env, argv[0], "fd", &fd) ||
      !arg_i64(env, argv[1], "offset", &off))
    return NULL;
  job_t *job = new_job(env, op, "lseek");
  if (job == NULL) return NULL;
  job->fd_in = fd;
  job->off_in = off;
  return queue_job(env, job);
}

static napi_value seek_data(napi_env env, napi_callback_info info) {
  return seek_common(env, info, OP_SEEK_DATA);
}

static napi_value seek_hole(napi_env env, napi_callback_info info) {
  return seek_common(env, info, OP_SEEK_HOLE);
}

/* (fdIn, offIn, fdOut, offOut, len) -> Promise<number of bytes copied>. */
static napi_value copy_range(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  int fd_in, fd_out;
  int64_t off_in, off_out, len;
  if (!get_args(env, info, 5, argv) || !arg_fd(env, argv[0], "fdIn", &fd_in) ||
      !arg_i64(env, argv[1], "offIn", &off_in) || !arg_fd(env, argv[2], "fdOut", &fd_out) ||
      !arg_i64(env, argv[3], "offOut", &off_out) || !arg_i64(env, argv[4], "len", &len))
    return NULL;
  job_t *job = new_job(env, OP_COPY_RANGE, "copy_file_range");
  if (job == NULL) return NULL;
  job->fd_in = fd_in;
  job->off_in = off_in;
  job->fd_out = fd_out;
  job->off_out = off_out;
  job->len = len;
  return queue_job(env, job);
}

/* Bounds one batch so a caller's typo cannot ask for gigabytes of result. */
#define MAX_EXTENTS_PER_CALL (1u << 20)

/* (fd, offset, maxExtents) -> Promise<Float64Array of [start, end) pairs>, empty when no data follows. */
static napi_value data_extents(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t off, max;
  if (!get_args(env, info, 3, argv) || !arg_fd(env, argv[0], "fd", &fd) ||
      !arg_i64(env, argv[1], "offset", &off) || !arg_i64(env, argv[2], "maxExtents", &max))
    return NULL;
  if (max < 1 || max > MAX_EXTENTS_PER_CALL) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "'maxExtents' must be between 1 and 1048576");
    return NULL;
  }
  job_t *job = new_job(env, OP_DATA_EXTENTS, "lseek");
  if (job == NULL) return NULL;
  job->fd_in = fd;
  job->off_in = off;
  job->max_ranges = (size_t)max;
  job->ranges = malloc((size_t)max * 2 * sizeof(double));
  if (job->ranges == NULL) {
    free_job(job);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  return queue_job(env, job);
}

/* (fdIn, fdOut, Float64Array of [start, end) pairs) -> Promise<bytes copied>, each range to the same offset. */
static napi_value copy_ranges(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd_in, fd_out;
  bool is_typed = false;
  napi_typedarray_type type;
  size_t length;
  void *data;
  if (!get_args(env, info, 3, argv) || !arg_fd(env, argv[0], "fdIn", &fd_in) ||
      !arg_fd(env, argv[1], "fdOut", &fd_out))
    return NULL;
  NAPI_CALL(env, napi_is_typedarray(env, argv[2], &is_typed));
  if (is_typed) NAPI_CALL(env, napi_get_typedarray_info(env, argv[2], &type, &length, &data, NULL, NULL));
  if (!is_typed || type != napi_float64_array || length % 2 != 0) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "'ranges' must be a Float64Array of [start, end) pairs");
    return NULL;
  }
  const double *src = data;
  for (size_t i = 0; i < length; i += 2) {
    double a = src[i], b = src[i + 1];
    if (a != floor(a) || b != floor(b) || a < 0 || b < a || b > MAX_SAFE_INT) {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "'ranges' must hold integer pairs 0 <= start <= end <= 2^53");
      return NULL;
    }
  }
  job_t *job = new_job(env, OP_COPY_RANGES, "copy_file_range");
  if (job == NULL) return NULL;
  job->fd_in = fd_in;
  job->fd_out = fd_out;
  job->nranges = length / 2;
  /* Copied: the JS array may be changed or collected while the threadpool works. */
  job->ranges = malloc(length > 0 ? length * sizeof(double) : 1);
  if (job->ranges == NULL) {
    free_job(job);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  if (length > 0) memcpy(job->ranges, src, length * sizeof(double));
  return queue_job(env, job);
}

/* (fd, exclusive, nonblock) -> undefined. Synchronous: it is taken once at start-up, and with nonblock it
 * never waits; a blocking call would stall the event loop, which is the caller's explicit choice. */
static napi_value do_flock(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  bool exclusive, nonblock;
  if (!get_args(env, info, 3, argv) || !arg_fd(env, argv[0], "fd", &fd) ||
      !arg_bool(env, argv[1], "exclusive", &exclusive) || !arg_bool(env, argv[2], "nonblock", &nonblock))
    return NULL;
  int op = (exclusive ? LOCK_EX : LOCK_SH) | (nonblock ? LOCK_NB : 0);
  int rc;
  do rc = flock(fd, op);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    napi_value error = make_errno_error(env, errno, "flock");
    if (error != NULL) napi_throw(env, error);
    return NULL;
  }
  napi_value undefined;
  NAPI_CALL(env, napi_get_undefined(env, &undefined));
  return undefined;
}

/* (fd, buffer, offset) -> bytes read; -1 when the data is not all in the page cache (or any error); -2 when
 * this file or kernel cannot do non-blocking reads at all (EOPNOTSUPP), so the caller stops trying.
 * Synchronous by design: preadv2(RWF_NOWAIT) never waits for the disk, so for a cached 4 KiB block the call
 * costs a memcpy, where a threadpool read costs two cross-thread wake-ups (the bulk of a QD1 read's latency).
 * -1 tells the caller to fall back to an ordinary asynchronous read, which then reports any real error. */
static napi_value pread_nowait(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  int fd;
  int64_t offset;
  void *data = NULL;
  size_t length = 0;
  bool is_buffer = false;
  if (!get_args(env, info, 3, argv) || !arg_fd(env, argv[0], "fd", &fd)) return NULL;
  if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer ||
      napi_get_buffer_info(env, argv[1], &data, &length) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "'buffer' must be a Buffer");
    return NULL;
  }
  if (!arg_i64(env, argv[2], "offset", &offset)) return NULL;
  ssize_t n = -1;
  if (length > 0) {
    struct iovec iov = {.iov_base = data, .iov_len = length};
    do n = preadv2(fd, &iov, 1, (off_t)offset, RWF_NOWAIT);
    while (n < 0 && errno == EINTR);
  } else {
    n = 0;
  }
  napi_value result;
  int64_t answer = n >= 0 ? (int64_t)n : (errno == EOPNOTSUPP || errno == ENOSYS) ? -2 : -1;
  NAPI_CALL(env, napi_create_int64(env, answer, &result));
  return result;
}

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"punchHole", NULL, punch_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fallocate", NULL, do_fallocate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"ftruncate", NULL, do_ftruncate, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seekData", NULL, seek_data, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seekHole", NULL, seek_hole, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyFileRange", NULL, copy_range, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dataExtents", NULL, data_extents, NULL, NULL, NULL, napi_enumerable, NULL},
      {"copyRanges", NULL, copy_ranges, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flock", NULL, do_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"preadNowait", NULL, pread_nowait, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
