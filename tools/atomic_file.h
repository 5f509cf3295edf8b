/*
 * atomic_file.h — whole files in and out.
 *
 * An output file is written completely or not at all: the bytes go to a new
 * temporary file in the same directory, which is flushed to disk and then
 * renamed over the destination. rename(2) within one file system is atomic,
 * so a reader (or a crash) sees either the old file or the complete new one,
 * never a prefix.
 */
#ifndef ATTN_TOOLS_ATOMIC_FILE_H
#define ATTN_TOOLS_ATOMIC_FILE_H

#include <stddef.h>

/* Room for any message these functions return. */
#define FILE_ERROR_SIZE 256

/* Writes size bytes of data to path atomically (see above), with the
 * permissions a new file gets from the umask. Returns NULL on success, or err
 * holding the reason ("cannot create a temporary file in 'out': Permission
 * denied"); the destination is then unchanged and no temporary file is left. */
const char *atomic_write(const char *path, const void *data, size_t size,
                         char err[FILE_ERROR_SIZE]);

/* Reads the whole file at path into a malloc'd buffer (*data, *size; free it
 * with free). Works on pipes and special files too. Returns NULL on success,
 * or err with the reason; *data is then NULL. */
const char *read_whole_file(const char *path, unsigned char **data, size_t *size,
                            char err[FILE_ERROR_SIZE]);

#endif
