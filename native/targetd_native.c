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
#include <sys/stat.h>
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
  OP_FTRUNCATE,
  OP_STEPS,
  OP_CREATE_TEMP
} op_kind;

/* One step of an OP_STEPS job (see fs_steps below). */
typedef enum {
  ST_PWRITE,
  ST_FTRUNCATE,
  ST_FSYNC,
  ST_FDATASYNC,
  ST_RENAME,
  ST_UNLINK,
  ST_ABSENT,
  ST_CLOSE,
  ST_SPARE,
  ST_SAME
} step_kind;

typedef struct {
  step_kind kind;
  int fd;
  int64_t num;   /* ST_PWRITE: file offset; ST_FTRUNCATE: length */
  char *path;    /* ST_RENAME: from; ST_UNLINK, ST_ABSENT, ST_SPARE, ST_SAME: the path */
  char *path2;   /* ST_RENAME: to */
  void *data;    /* ST_PWRITE: a private copy of the bytes */
  size_t len;
  bool missing_ok; /* ST_UNLINK: ENOENT counts as done */
  bool dsync;      /* ST_SPARE: open O_DSYNC */
} step_t;

/* Creates `path` (which must not exist) write-only, O_DSYNC if asked, mode exactly 0600 whatever the umask.
 * Returns the descriptor, or -1 with errno set (and nothing left behind). */
static int create_private(const char *path, bool dsync) {
  int fd;
  do fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | (dsync ? O_DSYNC : 0), 0600);
  while (fd < 0 && errno == EINTR);
  if (fd < 0) return -1;
  if (fchmod(fd, 0600) < 0) {
    int err = errno;
    close(fd);
    unlink(path);
    errno = err;
    return -1;
  }
  return fd;
}

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
  /* OP_STEPS: the steps (owned by the job), and the index of the one that failed */
  step_t *steps;
  size_t nsteps;
  size_t failed_step;
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

/* Like Node's fs errors: "CODE: description, syscall 'path' -> 'dest'" (path and dest when given). */
static napi_value make_errno_error_at(napi_env env, int err, const char *syscall, const char *path,
                                      const char *dest) {
  char msg[2 * PATH_MAX + 160];
  int n = snprintf(msg, sizeof msg, "%s: %s, %s", errno_name(err), strerror(err), syscall);
  if (path != NULL && n > 0 && (size_t)n < sizeof msg)
    n += snprintf(msg + n, sizeof msg - (size_t)n, " '%s'", path);
  if (dest != NULL && n > 0 && (size_t)n < sizeof msg) snprintf(msg + n, sizeof msg - (size_t)n, " -> '%s'", dest);
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

static napi_value make_errno_error(napi_env env, int err, const char *syscall) {
  return make_errno_error_at(env, err, syscall, NULL, NULL);
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

/* Runs the steps of an OP_STEPS job in order, stopping at the first failure (job->failed_step names it). */
static void run_steps(job_t *job) {
  bool failed = false;
  for (size_t i = 0; i < job->nsteps; i++) {
    step_t *st = &job->steps[i];
    int rc = 0;
    /* A close runs even after a failure, so the sequence never leaks a descriptor, and its own failure is
     * ignored: Linux releases the descriptor whatever close returns, and what had to be durable was synced
     * by an earlier step. */
    if (st->kind == ST_CLOSE) {
      close(st->fd);
      continue;
    }
    if (failed) continue;
    switch (st->kind) {
      case ST_CLOSE:
        break;
      case ST_SPARE:
        /* Made ahead for the caller's next sequence; failing to make one is not this sequence's failure. */
        st->fd = create_private(st->path, st->dsync);
        break;
      case ST_PWRITE:
        for (size_t done = 0; done < st->len;) {
          ssize_t n = pwrite(st->fd, (char *)st->data + done, st->len - done, (off_t)(st->num + (int64_t)done));
          if (n < 0) {
            if (errno == EINTR) continue;
            rc = -1;
            break;
          }
          done += (size_t)n;
        }
        job->syscall = "write";
        break;
      case ST_FTRUNCATE:
        do rc = ftruncate(st->fd, (off_t)st->num);
        while (rc < 0 && errno == EINTR);
        job->syscall = "ftruncate";
        break;
      case ST_FSYNC:
        do rc = fsync(st->fd);
        while (rc < 0 && errno == EINTR);
        job->syscall = "fsync";
        break;
      case ST_FDATASYNC:
        do rc = fdatasync(st->fd);
        while (rc < 0 && errno == EINTR);
        job->syscall = "fdatasync";
        break;
      case ST_RENAME:
        rc = rename(st->path, st->path2);
        job->syscall = "rename";
        break;
      case ST_UNLINK:
        rc = unlink(st->path);
        if (rc < 0 && errno == ENOENT && st->missing_ok) rc = 0;
        job->syscall = "unlink";
        break;
      case ST_SAME: {
        /* The directory this daemon holds open must still be the one at its path: removed and made again
         * (say, by another daemon that then took its own lock there), writes by path would land in a
         * directory this process no longer owns. */
        struct stat held, named;
        job->syscall = "stat";
        if (fstat(st->fd, &held) < 0 || stat(st->path, &named) < 0) {
          rc = -1;
        } else if (held.st_dev != named.st_dev || held.st_ino != named.st_ino) {
          errno = ESTALE;
          rc = -1;
        }
        break;
      }
      case ST_ABSENT: {
        struct stat sb;
        job->syscall = "lstat";
        if (lstat(st->path, &sb) == 0) {
          errno = EEXIST;
          rc = -1;
        } else if (errno == ENOENT) {
          rc = 0;
        } else {
          rc = -1;
        }
        break;
      }
    }
    if (rc < 0) {
      job->err = errno;
      job->failed_step = i;
      failed = true;
    }
  }
  /* A failed sequence answers with an error only: spares it made would leak, so they go. */
  if (failed) {
    for (size_t i = 0; i < job->nsteps; i++) {
      step_t *st = &job->steps[i];
      if (st->kind == ST_SPARE && st->fd >= 0) {
        close(st->fd);
        unlink(st->path);
        st->fd = -1;
      }
    }
  }
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
    case OP_STEPS:
      run_steps(job);
      break;
    case OP_CREATE_TEMP: {
      int fd = create_private(job->steps[0].path, job->steps[0].dsync);
      if (fd < 0) {
        job->err = errno;
        job->syscall = "open";
      }
      job->result = fd;
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
  for (size_t i = 0; i < job->nsteps; i++) {
    free(job->steps[i].path);
    free(job->steps[i].path2);
    free(job->steps[i].data);
  }
  free(job->steps);
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
    const step_t *at = job->op == OP_STEPS ? &job->steps[job->failed_step] : job->op == OP_CREATE_TEMP ? &job->steps[0] : NULL;
    value = make_errno_error_at(env, job->err, job->syscall, at != NULL ? at->path : NULL, at != NULL ? at->path2 : NULL);
    if (value != NULL && job->op == OP_CREATE_TEMP) {
      napi_value path;
      if (napi_create_string_utf8(env, job->steps[0].path, NAPI_AUTO_LENGTH, &path) == napi_ok)
        napi_set_named_property(env, value, "path", path);
    } else if (value != NULL && job->op == OP_STEPS) {
      napi_value step;
      step_t *st = &job->steps[job->failed_step];
      if (napi_create_uint32(env, (uint32_t)job->failed_step, &step) == napi_ok)
        napi_set_named_property(env, value, "step", step);
      if (st->path != NULL && napi_create_string_utf8(env, st->path, NAPI_AUTO_LENGTH, &step) == napi_ok)
        napi_set_named_property(env, value, "path", step);
      if (st->path2 != NULL && napi_create_string_utf8(env, st->path2, NAPI_AUTO_LENGTH, &step) == napi_ok)
        napi_set_named_property(env, value, "dest", step);
    }
    napi_reject_deferred(env, job->deferred, value);
  } else {
    if (job->op == OP_PUNCH_HOLE || job->op == OP_FALLOCATE || job->op == OP_FTRUNCATE) {
      napi_get_undefined(env, &value);
    } else if (job->op == OP_STEPS) {
      /* The descriptors of the spares made, in step order (-1 where one could not be made). */
      uint32_t n = 0;
      if (napi_create_array(env, &value) != napi_ok) value = NULL;
      for (size_t i = 0; value != NULL && i < job->nsteps; i++) {
        napi_value fd;
        if (job->steps[i].kind != ST_SPARE) continue;
        if (napi_create_int32(env, job->steps[i].fd, &fd) != napi_ok || napi_set_element(env, value, n++, fd) != napi_ok)
          value = NULL;
      }
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

/* Copies string `v` into a fresh malloc'd string; throws (naming `what`) and returns NULL if it is not a
 * non-empty string of fewer than PATH_MAX bytes without NUL bytes. */
static char *value_path(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  size_t len = 0;
  char msg[128];
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, v, NULL, 0, &len) == napi_ok && len > 0 && len < PATH_MAX) {
    char *s = malloc(len + 1);
    if (s == NULL) {
      napi_throw_error(env, "ENOMEM", "out of memory");
      return NULL;
    }
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    if (strlen(s) == len) return s; /* a NUL inside would silently cut the path short */
    free(s);
  }
  snprintf(msg, sizeof msg, "'%s' must be a non-empty path without NUL bytes", what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
}

/* value_path of property `key` of step `index`. */
static char *prop_path(napi_env env, napi_value obj, const char *key, size_t index) {
  napi_value v;
  char what[48];
  snprintf(what, sizeof what, "steps[%zu].%s", index, key);
  if (napi_get_named_property(env, obj, key, &v) != napi_ok) return NULL;
  return value_path(env, v, what);
}

/* Reads descriptor property `key` of step `i` (required); throws naming it when it is not one. */
static bool prop_fd(napi_env env, napi_value obj, size_t i, const char *key, int *out) {
  napi_value v;
  char what[48];
  snprintf(what, sizeof what, "steps[%zu].%s", i, key);
  return napi_get_named_property(env, obj, key, &v) == napi_ok && arg_fd(env, v, what, out);
}

/* Reads integer property `key` of step `i`, 0 … 2^53; when `optional` and absent, leaves `*out` alone. */
static bool prop_i64(napi_env env, napi_value obj, size_t i, const char *key, bool optional, int64_t *out) {
  napi_value v;
  napi_valuetype t;
  char what[48];
  snprintf(what, sizeof what, "steps[%zu].%s", i, key);
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) return false;
  return (optional && t == napi_undefined) || arg_i64(env, v, what, out);
}

/* Reads optional boolean property `key` of step `i`: false when absent. */
static bool prop_opt_bool(napi_env env, napi_value obj, size_t i, const char *key, bool *out) {
  napi_value v;
  napi_valuetype t;
  char what[48];
  *out = false;
  snprintf(what, sizeof what, "steps[%zu].%s", i, key);
  if (napi_get_named_property(env, obj, key, &v) != napi_ok || napi_typeof(env, v, &t) != napi_ok) return false;
  return t == napi_undefined || arg_bool(env, v, what, out);
}

/* Parses one {op, ...} object of fsSteps into `st`; throws and returns false when it is malformed. */
static bool parse_step(napi_env env, napi_value obj, size_t i, step_t *st) {
  static const struct {
    const char *name;
    step_kind kind;
  } ops[] = {{"pwrite", ST_PWRITE}, {"ftruncate", ST_FTRUNCATE}, {"fsync", ST_FSYNC},
             {"fdatasync", ST_FDATASYNC}, {"rename", ST_RENAME}, {"unlink", ST_UNLINK},
             {"absent", ST_ABSENT}, {"close", ST_CLOSE}, {"spare", ST_SPARE}, {"same", ST_SAME}};
  char op[16] = "";
  napi_value v;
  napi_valuetype t;
  size_t len = 0;
  if (napi_typeof(env, obj, &t) != napi_ok || t != napi_object || napi_get_named_property(env, obj, "op", &v) != napi_ok ||
      napi_typeof(env, v, &t) != napi_ok || t != napi_string ||
      napi_get_value_string_utf8(env, v, op, sizeof op, &len) != napi_ok)
    op[0] = 0;
  size_t k = 0;
  while (k < sizeof ops / sizeof ops[0] && strcmp(ops[k].name, op) != 0) k++;
  if (k == sizeof ops / sizeof ops[0]) {
    char msg[160];
    snprintf(msg, sizeof msg, "steps[%zu].op must be one of pwrite, ftruncate, fsync, fdatasync, rename, unlink, absent, close, spare, same", i);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  st->kind = ops[k].kind;
  st->fd = -1;
  switch (st->kind) {
    case ST_PWRITE: {
      bool is_buffer = false;
      void *bytes;
      if (!prop_fd(env, obj, i, "fd", &st->fd)) return false;
      if (napi_get_named_property(env, obj, "data", &v) != napi_ok || napi_is_buffer(env, v, &is_buffer) != napi_ok ||
          !is_buffer || napi_get_buffer_info(env, v, &bytes, &st->len) != napi_ok) {
        char msg[64];
        snprintf(msg, sizeof msg, "'steps[%zu].data' must be a Buffer", i);
        napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
        return false;
      }
      if (!prop_i64(env, obj, i, "offset", true, &st->num)) return false;
      /* Copied: the JS buffer may change or be collected while the threadpool works. */
      st->data = malloc(st->len > 0 ? st->len : 1);
      if (st->data == NULL) {
        napi_throw_error(env, "ENOMEM", "out of memory");
        return false;
      }
      if (st->len > 0) memcpy(st->data, bytes, st->len);
      return true;
    }
    case ST_FTRUNCATE:
      return prop_fd(env, obj, i, "fd", &st->fd) && prop_i64(env, obj, i, "length", false, &st->num);
    case ST_FSYNC:
    case ST_FDATASYNC:
    case ST_CLOSE:
      return prop_fd(env, obj, i, "fd", &st->fd);
    case ST_RENAME:
      return (st->path = prop_path(env, obj, "from", i)) != NULL && (st->path2 = prop_path(env, obj, "to", i)) != NULL;
    case ST_UNLINK:
      return (st->path = prop_path(env, obj, "path", i)) != NULL && prop_opt_bool(env, obj, i, "missingOk", &st->missing_ok);
    case ST_ABSENT:
      return (st->path = prop_path(env, obj, "path", i)) != NULL;
    case ST_SAME:
      return prop_fd(env, obj, i, "fd", &st->fd) && (st->path = prop_path(env, obj, "path", i)) != NULL;
    case ST_SPARE:
      return (st->path = prop_path(env, obj, "path", i)) != NULL && prop_opt_bool(env, obj, i, "dsync", &st->dsync);
  }
  return false;
}

/* Bounds one sequence; callers need a handful of steps. */
#define MAX_STEPS 64

/* (steps) -> Promise<descriptors of the spare steps>: the steps run in order in one threadpool job, so a small
 * durable update (write, rename, directory fsync, ...) costs one round trip instead of one per call. The
 * first failure stops the sequence and rejects with an errno error whose `step` is the failed step's index. */
static napi_value fs_steps(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  bool is_array = false;
  uint32_t n = 0;
  if (!get_args(env, info, 1, argv)) return NULL;
  NAPI_CALL(env, napi_is_array(env, argv[0], &is_array));
  if (is_array) NAPI_CALL(env, napi_get_array_length(env, argv[0], &n));
  if (!is_array || n == 0 || n > MAX_STEPS) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "'steps' must be an array of 1 to 64 steps");
    return NULL;
  }
  job_t *job = new_job(env, OP_STEPS, "fsSteps");
  if (job == NULL) return NULL;
  job->steps = calloc(n, sizeof *job->steps);
  if (job->steps == NULL) {
    free_job(job);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value obj;
    job->nsteps = i + 1; /* so free_job frees what this step allocated, even on failure */
    if (napi_get_element(env, argv[0], i, &obj) != napi_ok || !parse_step(env, obj, i, &job->steps[i])) {
      free_job(job);
      return NULL;
    }
  }
  return queue_job(env, job);
}

/* (path, dsync) -> Promise<fd>: creates `path` (O_CREAT|O_EXCL, write-only, O_DSYNC if asked) with mode
 * exactly 0600 in one threadpool job. The descriptor is the caller's to close (a `close` step, or fs.close). */
static napi_value create_temp(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool dsync;
  if (!get_args(env, info, 2, argv) || !arg_bool(env, argv[1], "dsync", &dsync)) return NULL;
  job_t *job = new_job(env, OP_CREATE_TEMP, "open");
  if (job == NULL) return NULL;
  job->steps = calloc(1, sizeof *job->steps);
  if (job->steps == NULL) {
    free_job(job);
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  job->nsteps = 1;
  if ((job->steps[0].path = value_path(env, argv[0], "path")) == NULL) {
    free_job(job);
    return NULL;
  }
  job->steps[0].dsync = dsync;
  return queue_job(env, job);
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
      {"fsSteps", NULL, fs_steps, NULL, NULL, NULL, napi_enumerable, NULL},
      {"createTemp", NULL, create_temp, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}
