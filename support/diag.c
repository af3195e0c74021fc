/* diag.c - clang-style diagnostics with the source line and a caret.
 * The printer looks the location's file up among the registered sources, prints the
 * line verbatim (tabs kept so the caret lines up; a long line cut to a window around
 * the column) and a caret with an optional '~' range.  Counting errors lets callers stop after DIAG_MAX_ERRORS. */
#include "support/support.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void
diag_init(Diag *d, FILE *out)
{
	memset(d, 0, sizeof *d);
	d->out = out ? out : stderr;
}

void
diag_add_source(Diag *d, const SourceFile *src)
{
	if (d->nsrcs < (int)(sizeof d->srcs / sizeof d->srcs[0]))
		d->srcs[d->nsrcs++] = src;
}

static const SourceFile *
find_source(const Diag *d, const char *path)
{
	for (int i = 0; path && i < d->nsrcs; i++)
		if (strcmp(d->srcs[i]->path, path) == 0)
			return d->srcs[i];
	return NULL;
}

/* Finds the start of 1-based line `line`; NULL when the file is shorter. */
static const char *
line_start(const SourceFile *src, int line)
{
	const char *p = src->text, *end = src->text + src->len;
	for (int l = 1; l < line; l++) {
		p = memchr(p, '\n', (size_t)(end - p));
		if (!p)
			return NULL;
		p++;
	}
	return p;
}

/* Longest stretch of a source line quoted (bytes), and of a message: a line of a
 * megabyte (a long name, a minified file) is quoted around the column, with "..."
 * where it is cut, so that an error never prints megabytes. */
#define DIAG_QUOTE_MAX 200
#define DIAG_MESSAGE_MAX 1000

static void
print_caret(Diag *d, Loc loc)
{
	const SourceFile *src = find_source(d, loc.file);
	if (!src || loc.line <= 0)
		return;
	const char *p = line_start(src, loc.line);
	if (!p)
		return;
	const char *end = src->text + src->len;
	const char *eol = memchr(p, '\n', (size_t)(end - p));
	size_t n = (size_t)((eol ? eol : end) - p);
	size_t col = loc.col > 0 ? (size_t)loc.col - 1 : 0; /* 0-based byte of the caret */
	size_t from = 0, to = n;
	if (n > DIAG_QUOTE_MAX) { /* a window around the caret */
		from = col > DIAG_QUOTE_MAX / 2 ? col - DIAG_QUOTE_MAX / 2 : 0;
		if (from > n - DIAG_QUOTE_MAX)
			from = n - DIAG_QUOTE_MAX;
		to = from + DIAG_QUOTE_MAX;
	}
	const char *pre = from ? "..." : "", *post = to < n ? "..." : "";
	fprintf(d->out, "%s%.*s%s\n", pre, (int)(to - from), p + from, post);
	char mark[DIAG_QUOTE_MAX + 8];
	size_t k = 0;
	for (size_t i = 0; i < strlen(pre); i++)
		mark[k++] = ' ';
	for (size_t i = from; i < col && i < to; i++)
		mark[k++] = p[i] == '\t' ? '\t' : ' ';
	mark[k++] = '^';
	for (size_t c = col + 2; loc.end_col > 0 && c < (size_t)loc.end_col && c <= to; c++)
		mark[k++] = '~';
	fprintf(d->out, "%.*s\n", (int)k, mark);
}

void
diag_verror(Diag *d, Loc loc, const char *kind, const char *fmt, va_list ap)
{
	bool is_error = strcmp(kind, "error") == 0;
	if (is_error)
		d->nerrors++;
	else if (strcmp(kind, "warning") == 0)
		d->nwarnings++;
	if (d->nerrors > DIAG_MAX_ERRORS)
		return;
	if (loc.file && loc.line > 0)
		fprintf(d->out, "%s:%d:%d: ", loc.file, loc.line, loc.col);
	else if (loc.file)
		fprintf(d->out, "%s: ", loc.file);
	else
		fprintf(d->out, "elide: ");
	fprintf(d->out, "%s: ", kind);
	char msg[DIAG_MESSAGE_MAX + 1];
	int len = vsnprintf(msg, sizeof msg, fmt, ap);
	fprintf(d->out, "%s%s\n", msg, len > DIAG_MESSAGE_MAX ? "..." : "");
	print_caret(d, loc);
	if (is_error && d->nerrors == DIAG_MAX_ERRORS)
		fprintf(d->out, "elide: fatal error: too many errors emitted, stopping now\n");
}

#define DIAG_FN(name, kind)                                        \
	void name(Diag *d, Loc loc, const char *fmt, ...)          \
	{                                                          \
		va_list ap;                                        \
		va_start(ap, fmt);                                 \
		diag_verror(d, loc, kind, fmt, ap);                \
		va_end(ap);                                        \
	}
DIAG_FN(diag_error, "error")
DIAG_FN(diag_warning, "warning")
DIAG_FN(diag_note, "note")

bool
diag_too_many(const Diag *d)
{
	return d->nerrors >= DIAG_MAX_ERRORS;
}

/* Files read stay allocated for the life of the process (diagnostics quote them
 * until the end); kept here so they stay reachable and leak checkers stay quiet. */
static const void **read_files; /* each file's struct and its path: some callers free
                                  * the struct and text but not the path */
static size_t nread_files, capread_files;

SourceFile *
diag_read_file(const char *path)
{
	FILE *f = file_fopen_read(path);
	if (!f)
		return NULL;
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t n;
	bool big = false;
	while (buf && (n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
		len += n;
		if (len > DIAG_MAX_SOURCE) { /* a device such as /dev/zero never ends */
			big = true;
			break;
		}
		if (cap - len - 1 == 0)
			buf = realloc(buf, cap *= 2);
	}
	int err = ferror(f);
	fclose(f);
	if (!buf || err || big) {
		free(buf);
		errno = big ? EFBIG : err ? EIO : ENOMEM;
		return NULL;
	}
	buf[len] = '\0';
	SourceFile *s = malloc(sizeof *s);
	if (!s)
		return NULL;
	s->path = strdup(path);
	s->text = buf;
	s->len = len;
	if (nread_files + 2 > capread_files) {
		size_t cap = capread_files ? 2 * capread_files : 16;
		const void **grown = realloc(read_files, cap * sizeof *grown);
		if (grown) {
			read_files = grown;
			capread_files = cap;
		}
	}
	if (nread_files + 2 <= capread_files) {
		read_files[nread_files++] = s;
		read_files[nread_files++] = s->path;
	}
	return s;
}

_Noreturn void
elide_ice(const char *file, int line, const char *msg)
{
	fprintf(stderr, "%s:%d: internal compiler error: %s\n", file, line, msg);
	abort();
}
