/* cmd_check.c - `elide check FILE [--policy NAME] [--dump-ast]`: parses, checks and
 * lowers a model (and verifies the IR), reporting every error at once.  With
 * --dump-ast it prints the syntax tree with locations to stdout first.
 * Exit codes: 0 no errors, 1 errors in the input, 2 bad usage. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "tools/driver.h"

static int
usage(FILE *out, int rc)
{
	fprintf(out, "USAGE: elide check FILE.elide [--policy NAME] [--dump-ast]\n\n"
	             "Parses, checks and lowers the model; all policies of the file are checked,\n"
	             "and the one named by --policy is attached (default: dense).\n");
	return rc;
}

int
cmd_check(int argc, char **argv)
{
	const char *path = NULL, *policy = NULL;
	bool dump = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return usage(stdout, 0);
		if (strcmp(argv[i], "--dump-ast") == 0)
			dump = true;
		else if (strcmp(argv[i], "--policy") == 0 && i + 1 < argc)
			policy = argv[++i];
		else if (strncmp(argv[i], "--policy=", 9) == 0)
			policy = argv[i] + 9;
		else if (argv[i][0] == '-' && argv[i][1]) {
			fprintf(stderr, "elide: error: unknown option '%s' for 'check'\n", argv[i]);
			return usage(stderr, 2);
		} else if (path) {
			fprintf(stderr, "elide: error: 'check' takes one file, saw '%s' and '%s'\n", path, argv[i]);
			return 2;
		} else
			path = argv[i];
	}
	if (!path) {
		fprintf(stderr, "elide: error: no input file\n");
		return usage(stderr, 2);
	}
	Diag d;
	diag_init(&d, stderr);
	SourceFile *src = diag_read_file(path);
	if (!src) {
		fprintf(stderr, "elide: error: cannot read '%s': %s\n", path,
		        errno == EFBIG ? "larger than the 64 MiB limit of a source file" : strerror(errno));
		return 1;
	}
	diag_add_source(&d, src);
	Arena ar = { 0 };
	Ast *file = ast_parse(&ar, src, &d);
	if (dump)
		ast_dump(stdout, file);
	Module *m = NULL;
	if (d.nerrors == 0)
		m = fe_lower(file, policy, &d);
	if (m) {
		ir_verify(m, &d); /* the lowered IR must be well formed: anything else is a front-end bug */
		ir_free_module(m);
	}
	arena_free(&ar);
	return d.nerrors ? 1 : 0;
}
