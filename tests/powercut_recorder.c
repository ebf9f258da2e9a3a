/* Records, in order, every write, truncate, sync and unlink a process makes to the
 * files whose path starts with $POWERCUT_PREFIX, data included, into $POWERCUT_LOG.
 * Loaded with LD_PRELOAD into the station agent (tests/test_agent_powercut.py), so the
 * real SQLite library of the real agent is recorded; tests/powercut.py then
 * rebuilds the files as a power cut at any point would have left them.
 *
 * One record: op (1 byte: O open, W write, T truncate, S sync, U unlink), path length
 * (uint32), offset or size (uint64), data length (uint64), path, data.
 * Built by the test with: cc -shared -fPIC -O1 -o recorder.so recorder.c -ldl -lpthread
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 65536

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char *paths[MAX_FD];
static int log_fd = -1;
static const char *prefix;
static size_t prefix_len;

static int (*real_open64)(const char *, int, ...);
static int (*real_open)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_close)(int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static int (*real_ftruncate64)(int, off_t);
static int (*real_fsync)(int);
static int (*real_fdatasync)(int);
static int (*real_unlink)(const char *);

__attribute__((constructor)) static void setup(void) {
    real_open64 = dlsym(RTLD_NEXT, "open64");
    real_open = dlsym(RTLD_NEXT, "open");
    real_openat = dlsym(RTLD_NEXT, "openat");
    real_close = dlsym(RTLD_NEXT, "close");
    real_write = dlsym(RTLD_NEXT, "write");
    real_pwrite64 = dlsym(RTLD_NEXT, "pwrite64");
    real_ftruncate64 = dlsym(RTLD_NEXT, "ftruncate64");
    real_fsync = dlsym(RTLD_NEXT, "fsync");
    real_fdatasync = dlsym(RTLD_NEXT, "fdatasync");
    real_unlink = dlsym(RTLD_NEXT, "unlink");
    prefix = getenv("POWERCUT_PREFIX");
    prefix_len = prefix ? strlen(prefix) : 0;
    const char *log_path = getenv("POWERCUT_LOG");
    if (prefix && log_path)
        log_fd = real_open64(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static int watched(const char *path) {
    return log_fd >= 0 && path && strncmp(path, prefix, prefix_len) == 0;
}

static void put(const void *buf, size_t n) {
    const char *p = buf;
    while (n > 0) {
        ssize_t k = real_write(log_fd, p, n);
        if (k <= 0) abort(); /* a record lost would make the replay a lie */
        p += k;
        n -= (size_t)k;
    }
}

/* the caller holds the lock */
static void record(char op, const char *path, uint64_t offset, const void *data, uint64_t n) {
    uint32_t plen = (uint32_t)strlen(path);
    char head[21];
    head[0] = op;
    memcpy(head + 1, &plen, 4);
    memcpy(head + 5, &offset, 8);
    memcpy(head + 13, &n, 8);
    put(head, sizeof head);
    put(path, plen);
    if (n) put(data, n);
}

static void opened(int fd, const char *path) {
    if (fd < 0 || fd >= MAX_FD || !watched(path)) return;
    pthread_mutex_lock(&lock);
    free(paths[fd]);
    paths[fd] = strdup(path);
    record('O', path, 0, NULL, 0);
    pthread_mutex_unlock(&lock);
}

static int mode_of(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, int) : 0;
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_of(flags, ap);
    va_end(ap);
    int fd = real_open64(path, flags, mode);
    opened(fd, path);
    return fd;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_of(flags, ap);
    va_end(ap);
    int fd = real_open(path, flags, mode);
    opened(fd, path);
    return fd;
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    int mode = mode_of(flags, ap);
    va_end(ap);
    int fd = real_openat(dirfd, path, flags, mode);
    if (path[0] == '/') opened(fd, path);
    return fd;
}

int close(int fd) {
    if (fd >= 0 && fd < MAX_FD && paths[fd]) {
        pthread_mutex_lock(&lock);
        free(paths[fd]);
        paths[fd] = NULL;
        pthread_mutex_unlock(&lock);
    }
    return real_close(fd);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset) {
    if (fd < 0 || fd >= MAX_FD || !paths[fd]) return real_pwrite64(fd, buf, n, offset);
    pthread_mutex_lock(&lock);
    ssize_t k = real_pwrite64(fd, buf, n, offset);
    if (k > 0 && paths[fd]) record('W', paths[fd], (uint64_t)offset, buf, (uint64_t)k);
    pthread_mutex_unlock(&lock);
    return k;
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t offset) {
    return pwrite64(fd, buf, n, offset);
}

ssize_t write(int fd, const void *buf, size_t n) {
    if (fd < 0 || fd >= MAX_FD || !paths[fd]) return real_write(fd, buf, n);
    pthread_mutex_lock(&lock);
    off_t at = lseek(fd, 0, SEEK_CUR);
    ssize_t k = real_write(fd, buf, n);
    if (k > 0 && paths[fd]) record('W', paths[fd], (uint64_t)at, buf, (uint64_t)k);
    pthread_mutex_unlock(&lock);
    return k;
}

int ftruncate64(int fd, off_t size) {
    if (fd < 0 || fd >= MAX_FD || !paths[fd]) return real_ftruncate64(fd, size);
    pthread_mutex_lock(&lock);
    int r = real_ftruncate64(fd, size);
    if (r == 0 && paths[fd]) record('T', paths[fd], (uint64_t)size, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int ftruncate(int fd, off_t size) { return ftruncate64(fd, size); }

static int synced(int fd, int (*real)(int)) {
    if (fd < 0 || fd >= MAX_FD || !paths[fd]) return real(fd);
    /* under the lock: exactly the writes recorded before this record are the ones
     * the sync covers; recorded once the sync has returned */
    pthread_mutex_lock(&lock);
    int r = real(fd);
    if (r == 0 && paths[fd]) record('S', paths[fd], 0, NULL, 0);
    pthread_mutex_unlock(&lock);
    return r;
}

int fsync(int fd) { return synced(fd, real_fsync); }
int fdatasync(int fd) { return synced(fd, real_fdatasync); }

int unlink(const char *path) {
    int r = real_unlink(path);
    if (r == 0 && watched(path)) {
        pthread_mutex_lock(&lock);
        record('U', path, 0, NULL, 0);
        pthread_mutex_unlock(&lock);
    }
    return r;
}
