/* outset.c - writing the output files of `elide compile` as one set, and single
 * files, without ever following a planted link or leaving a temporary behind.
 * The set (NAME.o, NAME.h, NAME.weights, NAME.json, ...) is replaced as a whole:
 *   1. recover: a commit an earlier run left half done (DIR/.NAME.commit) is rolled
 *      forward; staging directories of dead compiles are removed;
 *   2. stage: every file is written into a fresh directory DIR/.NAME.new.PID.XXXXXX
 *      (mkdtemp: private, unpredictable), each created with O_CREAT|O_EXCL|O_NOFOLLOW
 *      and synced (a file with a writer, the object or the streamed blob, is created
 *      so too and then filled by it, never held whole in memory); SIGINT, SIGTERM and SIGHUP remove the staging directory and end
 *      the process; any failure (ENOSPC...) removes it and leaves DIR untouched;
 *   3. commit: with those signals blocked, the staging directory is renamed to
 *      DIR/.NAME.commit (the journal: from here on the new set wins), each file is
 *      renamed into DIR, and the journal is removed.
 * So after any interruption DIR holds the complete old set or the complete new one;
 * only a SIGKILL or power loss inside step 3 (a few renames) leaves the journal, and
 * the next compile into DIR finishes it.  The files also carry the model hash, so a
 * mixed set is rejected at load time all the same (docs/codegen.md).
 * Single files (cg_write_file: opt -o, --dump-logits, depfiles, import -o) go through
 * an exclusive mkstemp temporary renamed into place; a path naming a character device
 * or a FIFO is written in place instead (renaming over /dev/null would replace it). */
#include "codegen/codegen.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Writes n bytes to fd; false with errno set. */
static bool
write_all(int fd, const void *data, size_t n)
{
	const char *p = data;
	while (n > 0) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			if (k == 0)
				errno = ENOSPC;
			return false;
		}
		p += k;
		n -= (size_t)k;
	}
	return true;
}

/* Writes n bytes to fd and syncs it; false with errno set. */
static bool
write_fd(int fd, const void *data, size_t n)
{
	return write_all(fd, data, n) && fsync(fd) == 0;
}

/* Writes n bytes to a new file name in directory dfd (exclusive, no links), synced. */
static bool
write_new(int dfd, const char *name, const void *data, size_t n)
{
	int fd = openat(dfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	if (fd < 0)
		return false;
	bool ok = write_fd(fd, data, n);
	int e = errno;
	ok = close(fd) == 0 && ok;
	if (!ok) {
		unlinkat(dfd, name, 0);
		errno = e;
	}
	return ok;
}

/* Creates file f in the staging directory sfd (its path: stage) exclusively, without
 * following links, and has f->write fill it; synced.  The file is removed on failure. */
static bool
write_streamed(int sfd, const char *stage, const char *dir, const CgOutFile *f, char *err, size_t nerr)
{
	size_t plen = strlen(stage) + strlen(f->name) + 2;
	char *path = xmalloc(plen);
	snprintf(path, plen, "%s/%s", stage, f->name);
	int fd = openat(sfd, f->name, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
	bool ok = fd >= 0;
	if (!ok)
		snprintf(err, nerr, "cannot write '%s/%s': %s", dir, f->name, strerror(errno));
	ok = ok && f->write(f->arg, fd, path, err, nerr);
	if (ok && fsync(fd) != 0) {
		snprintf(err, nerr, "cannot write '%s/%s': %s", dir, f->name, strerror(errno));
		ok = false;
	}
	if (fd >= 0 && close(fd) != 0 && ok) {
		snprintf(err, nerr, "cannot write '%s/%s': %s", dir, f->name, strerror(errno));
		ok = false;
	}
	if (!ok && fd >= 0)
		unlinkat(sfd, f->name, 0);
	free(path);
	return ok;
}

/* Removes the plain files of directory dir (relative to dfd) and the directory. */
static void
remove_dir(int dfd, const char *dir)
{
	int fd = openat(dfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0) {
		DIR *d = fdopendir(fd);
		if (d) {
			struct dirent *e;
			while ((e = readdir(d)))
				if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, ".."))
					unlinkat(fd, e->d_name, 0);
			closedir(d);
		} else {
			close(fd);
		}
	}
	unlinkat(dfd, dir, AT_REMOVEDIR);
}

/* Moves every file of directory dir (relative to dfd) into dfd, then removes dir. */
static bool
move_all(int dfd, const char *dir)
{
	int fd = openat(dfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	bool ok = true;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			ok &= renameat(fd, e->d_name, dfd, e->d_name) == 0;
	closedir(d);
	fsync(dfd);
	return ok && unlinkat(dfd, dir, AT_REMOVEDIR) == 0;
}

/* Step 1: finishes a half-done commit of `name`, removes dead compiles' staging. */
static bool
recover(int dfd, const char *name, char *err, size_t nerr)
{
	char journal[300];
	snprintf(journal, sizeof journal, ".%s.commit", name);
	struct stat st;
	if (fstatat(dfd, journal, &st, AT_SYMLINK_NOFOLLOW) == 0) {
		if (!S_ISDIR(st.st_mode) || !move_all(dfd, journal)) {
			snprintf(err, nerr, "cannot finish the interrupted output set '%s': %s", journal, strerror(errno));
			return false;
		}
	}
	char prefix[300];
	int np = snprintf(prefix, sizeof prefix, ".%s.new.", name);
	int fd = dup(dfd);
	DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		if (fd >= 0)
			close(fd);
		return true;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (strncmp(e->d_name, prefix, (size_t)np) != 0)
			continue;
		long pid = strtol(e->d_name + np, NULL, 10);
		if (pid > 0 && (kill((pid_t)pid, 0) == 0 || errno != ESRCH))
			continue; /* a compile still running */
		remove_dir(dfd, e->d_name);
	}
	closedir(d);
	return true;
}

/* The staging directory of the running compile, for the signal handler. */
static int stage_dfd = -1;
static char stage_name[320];
static const char *const *stage_files;
static int stage_nfiles;

/* Removes the running compile's staging directory and its files; only
 * async-signal-safe calls, so that the signal handler can use it. */
static void
remove_stage(void)
{
	int sfd = openat(stage_dfd, stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
	if (sfd >= 0) {
		for (int i = 0; i < stage_nfiles; i++)
			unlinkat(sfd, stage_files[i], 0);
		close(sfd);
	}
	unlinkat(stage_dfd, stage_name, AT_REMOVEDIR);
}

static void
on_signal(int sig)
{
	remove_stage();
	signal(sig, SIG_DFL);
	raise(sig);
}

static const int stage_signals[] = { SIGINT, SIGTERM, SIGHUP };

void
cg_write_set_abandon(void)
{
	if (stage_dfd < 0)
		return;
	remove_stage();
	stage_dfd = -1;
}

bool
cg_write_set(const char *dir, const char *name, const CgOutFile *files, int nfiles, char *err, size_t nerr)
{
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		snprintf(err, nerr, "cannot open the output directory '%s': %s", dir, strerror(errno));
		return false;
	}
	if (!recover(dfd, name, err, nerr)) {
		close(dfd);
		return false;
	}
	/* 2. stage; the signals are held from before mkdtemp until the handler that removes
	 * the staging directory is in place (a SIGTERM in between left it behind: the
	 * hostile-input campaign saw one in 15 interrupted compiles) */
	sigset_t hold0, prev0;
	sigemptyset(&hold0);
	for (int i = 0; i < 3; i++)
		sigaddset(&hold0, stage_signals[i]);
	sigprocmask(SIG_BLOCK, &hold0, &prev0);
	char tmpl[4096];
	snprintf(tmpl, sizeof tmpl, "%s/.%s.new.%ld.XXXXXX", dir, name, (long)getpid());
	if (!mkdtemp(tmpl)) {
		snprintf(err, nerr, "cannot create a staging directory in '%s': %s", dir, strerror(errno));
		sigprocmask(SIG_SETMASK, &prev0, NULL);
		close(dfd);
		return false;
	}
	const char *base = strrchr(tmpl, '/') + 1;
	const char **names = xcalloc((size_t)nfiles + 1, sizeof *names);
	for (int i = 0; i < nfiles; i++)
		names[i] = files[i].name;
	struct sigaction sa = { .sa_handler = on_signal }, old[3];
	sigemptyset(&sa.sa_mask);
	snprintf(stage_name, sizeof stage_name, "%s", base);
	stage_dfd = dfd;
	stage_files = names;
	stage_nfiles = nfiles;
	for (int i = 0; i < 3; i++)
		sigaction(stage_signals[i], &sa, &old[i]);
	sigprocmask(SIG_SETMASK, &prev0, NULL); /* a signal held until now runs the handler */
	int sfd = openat(dfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	bool ok = sfd >= 0;
	for (int i = 0; ok && i < nfiles; i++) {
		if (files[i].write) {
			ok = write_streamed(sfd, tmpl, dir, &files[i], err, nerr);
			continue;
		}
		if (!write_new(sfd, files[i].name, files[i].data, files[i].size)) {
			snprintf(err, nerr, "cannot write '%s/%s': %s", dir, files[i].name, strerror(errno));
			ok = false;
		}
	}
	if (sfd >= 0)
		close(sfd);
	/* a name that cannot be replaced by a rename (a directory there) fails now, before
	 * anything in dir changes */
	for (int i = 0; ok && i < nfiles; i++) {
		struct stat st;
		if (fstatat(dfd, files[i].name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
			snprintf(err, nerr, "cannot write '%s/%s': %s", dir, files[i].name, strerror(EISDIR));
			ok = false;
		}
	}
	/* 3. commit, with the signals held */
	sigset_t hold, prev;
	sigemptyset(&hold);
	for (int i = 0; i < 3; i++)
		sigaddset(&hold, stage_signals[i]);
	sigprocmask(SIG_BLOCK, &hold, &prev);
	char journal[300];
	snprintf(journal, sizeof journal, ".%s.commit", name);
	if (ok && renameat(dfd, base, dfd, journal) != 0) {
		snprintf(err, nerr, "cannot commit the outputs in '%s': %s", dir, strerror(errno));
		ok = false;
	}
	if (ok && !move_all(dfd, journal)) {
		snprintf(err, nerr, "cannot move the outputs into '%s': %s", dir, strerror(errno));
		ok = false; /* the journal stays: the next compile finishes it */
	}
	if (!ok)
		remove_dir(dfd, base);
	for (int i = 0; i < 3; i++)
		sigaction(stage_signals[i], &old[i], NULL);
	stage_dfd = -1;
	sigprocmask(SIG_SETMASK, &prev, NULL);
	free(names);
	close(dfd);
	return ok;
}

/* A path that names a character device, a FIFO or a socket (/dev/null, a pipe), or
 * any path under /dev/ (/dev/stdout redirected to a file), is written in place: a
 * temporary renamed over it would replace the device node with a regular file (as
 * root, /dev/null itself; the hostile-input campaign did).  A FIFO without a reader is
 * an error (ENXIO), not a wait. */
static bool
write_device(const char *path, const void *data, size_t n, bool trunc, char *err, size_t nerr)
{
	int fd = open(path, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK | (trunc ? O_TRUNC : 0));
	bool ok = fd >= 0;
	if (ok) {
		int fl = fcntl(fd, F_GETFL);
		/* no fsync: a device or a pipe has nothing to sync (EINVAL) */
		ok = fl >= 0 && fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) == 0 && write_all(fd, data, n);
		int e = errno;
		ok = close(fd) == 0 && ok;
		if (!ok && e)
			errno = e;
	}
	if (!ok)
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
	return ok;
}

bool
cg_write_file(const char *path, const void *data, size_t n, char *err, size_t nerr)
{
	struct stat st;
	if (stat(path, &st) == 0 &&
	    (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) || strncmp(path, "/dev/", 5) == 0))
		return write_device(path, data, n, S_ISREG(st.st_mode), err, nerr);
	/* a temporary beside path, created exclusively by mkstemp (O_CREAT|O_EXCL: a
	 * planted link is never followed), renamed over path when complete */
	size_t len = strlen(path);
	const char *slash = strrchr(path, '/');
	int dlen = slash ? (int)(slash - path) + 1 : 0;
	char *tmp = xmalloc(len + 16);
	snprintf(tmp, len + 16, "%.*s.%s.XXXXXX", dlen, path, path + dlen);
	int fd = mkstemp(tmp);
	bool ok = fd >= 0;
	if (ok) {
		ok = write_fd(fd, data, n);
		int e = errno;
		ok = close(fd) == 0 && ok;
		if (ok)
			ok = rename(tmp, path) == 0;
		else
			errno = e;
		if (!ok) {
			e = errno;
			unlink(tmp);
			errno = e;
		}
	}
	if (!ok)
		snprintf(err, nerr, "cannot write '%s': %s", path, strerror(errno));
	free(tmp);
	return ok;
}
