/*
 * atomic_file.c — whole files in and out (see atomic_file.h).
 */
#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Creates "<path>.tmp<pid>.<n>" with O_EXCL, so two writers never share a
 * temporary file. The name sits beside the destination: rename(2) is only
 * atomic within one file system. Mode 0666 lets the umask decide, as for any
 * new file (mkstemp would force 0600). */
static int create_temporary(const char *path, char **tmp_name)
{
    size_t n = strlen(path) + 48;
    char *name = malloc(n);
    if (!name) {
        errno = ENOMEM;
        return -1;
    }
    for (unsigned attempt = 0; attempt < 100; attempt++) {
        snprintf(name, n, "%s.tmp%ld.%u", path, (long)getpid(), attempt);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0) {
            *tmp_name = name;
            return fd;
        }
        if (errno != EEXIST)
            break;
    }
    int saved = errno;
    free(name);
    errno = saved;
    return -1;
}

static int write_all(int fd, const unsigned char *p, size_t size)
{
    while (size > 0) {
        ssize_t w = write(fd, p, size);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        size -= (size_t)w;
    }
    return 0;
}

const char *atomic_write(const char *path, const void *data, size_t size,
                         char err[FILE_ERROR_SIZE])
{
    char *tmp = NULL;
    int fd = create_temporary(path, &tmp);
    if (fd < 0) {
        snprintf(err, FILE_ERROR_SIZE, "cannot create a temporary file beside it: %s",
                 strerror(errno));
        return err;
    }
    /* fsync before rename: otherwise a crash could leave the new name
     * pointing at a file whose data never reached the disk. */
    if (write_all(fd, data, size) != 0 || fsync(fd) != 0) {
        snprintf(err, FILE_ERROR_SIZE, "cannot write: %s", strerror(errno));
        close(fd);
        unlink(tmp);
        free(tmp);
        return err;
    }
    if (close(fd) != 0) {
        snprintf(err, FILE_ERROR_SIZE, "cannot write: %s", strerror(errno));
        unlink(tmp);
        free(tmp);
        return err;
    }
    if (rename(tmp, path) != 0) {
        snprintf(err, FILE_ERROR_SIZE, "cannot replace the file: %s", strerror(errno));
        unlink(tmp);
        free(tmp);
        return err;
    }
    free(tmp);
    return NULL;
}

const char *read_whole_file(const char *path, unsigned char **data, size_t *size,
                            char err[FILE_ERROR_SIZE])
{
    *data = NULL;
    *size = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, FILE_ERROR_SIZE, "cannot open: %s", strerror(errno));
        return err;
    }
    /* Grow by doubling rather than trusting a size from stat: pipes and
     * /proc files have none, and a file may change while it is read. */
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        unsigned char *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    if (!buf) {
        fclose(f);
        snprintf(err, FILE_ERROR_SIZE, "cannot read: out of memory");
        return err;
    }
    if (ferror(f)) {
        int saved = errno;
        fclose(f);
        free(buf);
        snprintf(err, FILE_ERROR_SIZE, "cannot read: %s", strerror(saved));
        return err;
    }
    fclose(f);
    *data = buf;
    *size = len;
    return NULL;
}
