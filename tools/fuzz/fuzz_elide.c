/* fuzz_elide.c - libFuzzer target for the elide language front end: lexer, parser,
 * checks, lowering and policy checks.  Any input must give diagnostics or a module,
 * never a crash, a leak or a hang.  Each input is also checked with every policy the
 * text names (cheaply: the first few 'policy NAME' words). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "ir/ir.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

static void
check(const SourceFile *src, const char *policy)
{
	Diag d;
	diag_init(&d, devnull);
	diag_add_source(&d, src);
	Arena ar = { 0 };
	Ast *file = ast_parse(&ar, src, &d);
	if (d.nerrors == 0) {
		Module *m = fe_lower(file, policy, &d);
		if ((m != NULL) != (d.nerrors == 0))
			__builtin_trap(); /* a module exactly when there were no errors */
		if (m && !ir_verify(m, &d))
			__builtin_trap(); /* lowering must give well-formed IR */
		ir_free_module(m);
	}
	if (policy == NULL) {
		FILE *dump = devnull;
		ast_dump(dump, file);
	}
	arena_free(&ar);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull)
		devnull = fopen("/dev/null", "w");
	if (size > 1 << 16)
		return 0;
	char *text = xmalloc(size + 1);
	memcpy(text, data, size);
	text[size] = '\0';
	SourceFile src = { .path = "fuzz.elide", .text = text, .len = size };
	check(&src, NULL);
	/* policies named in the text */
	int n = 0;
	for (const char *p = text; n < 3 && (p = strstr(p, "policy ")); p += 7) {
		char name[64];
		if (sscanf(p + 7, "%63[A-Za-z0-9_]", name) == 1) {
			check(&src, name);
			n++;
		}
	}
	free(text);
	return 0;
}
