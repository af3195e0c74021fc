/* cmd_opt.c - `elide opt`: read a model (.eir text, or .elide through the front end),
 * verify it, run a pipeline of passes and print the resulting IR (docs/ir.md).
 *   elide opt FILE.eir|FILE.elide [--passes=a,b,c] [--print-after=NAME[,NAME]]
 *             [--print-after-all] [--verify-each] [--time-passes] [--policy NAME] [--no-pass=NAME]
 *             [-o OUT.eir] [--list-passes]          (FILE '-' reads .eir from stdin)
 * The input is verified before the first pass, except that a pipeline starting with
 * shape-infer (the pass that repairs stale shapes) is verified after it; then the IR
 * is verified after every pass, in every build type (--no-verify-each: at the end).  Dumps and
 * timings go to stderr, the final IR to stdout or -o (written to a temporary file,
 * then renamed, so a failed run never leaves half a file).  Exit codes: 0, 1 errors
 * in the input or a pass, 2 usage. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tools/driver.h"

static void
usage(FILE *out)
{
	fprintf(out, "USAGE: elide opt FILE.eir|FILE.elide|- [options]\n\n"
	             "OPTIONS:\n"
	             "  --passes=a,b,c         run these passes in order (default: none); the name\n"
	             "                         'default' is the pipeline of 'elide compile' and 'elide run'\n"
	             "  --print-after=NAME     print the IR to stderr after pass NAME (comma list)\n"
	             "  --print-after-all      print the IR to stderr after every pass\n"
	             "  --no-pass=NAME         leave pass NAME (comma list) out of `default`\n"
	             "  --verify-each          verify the IR after every pass (the default)\n"
	             "  --no-verify-each       verify the input and the final IR only\n"
	             "  --time-passes          print the wall time of every pass to stderr\n"
	             "  --policy NAME          the policy of a .elide input to attach\n"
	             "  -o FILE                write the IR to FILE instead of stdout\n"
	             "  --list-passes          list the passes\n\nPASSES:\n");
	for (unsigned i = 0; i < pass_count; i++)
		fprintf(out, "  %-16s %s\n", pass_table[i].name, pass_table[i].desc);
}

static bool
ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), k = strlen(suffix);
	return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Writes the module to path through a temporary file (created exclusively) renamed
 * into place. */
static bool
write_out(const Module *m, const char *path)
{
	if (!path) {
		ir_print_module(stdout, m);
		return fflush(stdout) == 0;
	}
	char *text = ir_print_module_str(m), err[512];
	bool ok = cg_write_file(path, text, strlen(text), err, sizeof err);
	if (!ok)
		fprintf(stderr, "elide: error: %s\n", err);
	free(text);
	return ok;
}

/* Frees the sources registered with d (diag_read_file and fe_load allocate them) once
 * nothing points into them any more, so the sanitizer build's leak check stays clean. */
static void
free_sources(Diag *d)
{
	for (int i = 0; i < d->nsrcs; i++) {
		SourceFile *s = (SourceFile *)d->srcs[i];
		free((char *)s->text);
		free((char *)s->path);
		free(s);
	}
	d->nsrcs = 0;
}

static int
opt_main(int argc, char **argv, Diag *d);

int
cmd_opt(int argc, char **argv)
{
	Diag d;
	diag_init(&d, stderr);
	int rc = opt_main(argc, argv, &d);
	free_sources(&d);
	return rc;
}

static int
opt_main(int argc, char **argv, Diag *d)
{
	const char *file = NULL, *passes = NULL, *policy = NULL, *out = NULL;
	PassOptions o = { .verify_each = true };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--list-passes") == 0) {
			for (unsigned k = 0; k < pass_count; k++)
				printf("%s\n", pass_table[k].name);
			return 0;
		} else if (strncmp(a, "--passes=", 9) == 0) {
			passes = a + 9;
		} else if (strncmp(a, "--print-after=", 14) == 0) {
			o.print_after = a + 14;
		} else if (strncmp(a, "--no-pass=", 10) == 0) {
			o.skip = a + 10;
		} else if (strcmp(a, "--print-after-all") == 0) {
			o.print_after_all = true;
		} else if (strcmp(a, "--verify-each") == 0) {
			o.verify_each = true;
		} else if (strcmp(a, "--no-verify-each") == 0) {
			o.verify_each = false;
		} else if (strcmp(a, "--time-passes") == 0) {
			o.time_passes = true;
		} else if (strncmp(a, "--policy=", 9) == 0) {
			policy = a + 9;
		} else if ((strcmp(a, "--policy") == 0 || strcmp(a, "-o") == 0) && i + 1 < argc) {
			*(a[1] == 'o' ? &out : &policy) = argv[++i];
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "elide: error: unknown option '%s' (see 'elide opt --help')\n", a);
			return 2;
		} else if (file) {
			fprintf(stderr, "elide: error: more than one input file ('%s' and '%s')\n", file, a);
			return 2;
		} else {
			file = a;
		}
	}
	if (!file) {
		fprintf(stderr, "elide: error: no input file (see 'elide opt --help')\n");
		return 2;
	}
	Module *m = NULL;
	if (ends_with(file, ".elide")) {
		m = fe_load(file, policy, d);
	} else {
		if (policy) {
			fprintf(stderr, "elide: error: --policy applies to .elide input; a .eir file carries its policy\n");
			return 2;
		}
		SourceFile *src = diag_read_file(strcmp(file, "-") == 0 ? "/dev/stdin" : file);
		if (src && strcmp(file, "-") == 0) {
			free((char *)src->path);
			src->path = xstrdup("<stdin>");
		}
		if (!src) {
			fprintf(stderr, "elide: error: cannot read '%s': %s\n", file,
			        errno == EFBIG ? "larger than the 64 MiB limit of a source file" : strerror(errno));
			return 1;
		}
		diag_add_source(d, src);
		m = ir_parse_module(src, d);
	}
	if (!m)
		return 1;
	const PassInfo *first = NULL;
	if (passes && *passes) {
		const char *e = strchr(passes, ',');
		char name[64];
		snprintf(name, sizeof name, "%.*s", (int)(e ? (size_t)(e - passes) : strlen(passes)), passes);
		first = pass_find(name);
	}
	bool repairs = first && first->run == pass_shape_infer;
	if (!repairs && !ir_verify(m, d)) {
		ir_free_module(m);
		return 1;
	}
	bool ok;
	if (passes && strcmp(passes, "default") == 0) {
		/* `default` alone is what `elide compile` runs, warnings for unapplied statements included */
		ok = pass_run_default_opts(m, &o, d);
	} else if (repairs && !o.verify_each) {
		/* the repair is verified before the next pass sees the module */
		const char *rest = strchr(passes, ',');
		ok = pass_run_pipeline(m, "shape-infer", &o, d) && ir_verify(m, d) &&
		     (!rest || pass_run_pipeline(m, rest + 1, &o, d));
	} else {
		ok = pass_run_pipeline(m, passes, &o, d);
	}
	if (ok && !o.verify_each && !ir_verify(m, d))
		ok = false;
	ok = ok && write_out(m, out);
	ir_free_module(m);
	return ok ? 0 : 1;
}
