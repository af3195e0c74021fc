/* fuzz_eir.c - libFuzzer target for the textual IR: lexer, parser, verifier, printer
 * and the first passes.  Any input must give diagnostics or a module, never a crash,
 * a leak or a hang.  Oracles (a violation traps):
 *   1. a module comes back exactly when no error was reported;
 *   2. print(parse(print(m))) == print(m);
 *   3. a module that verifies still verifies after shape-infer, const-fold, cse and
 *      dce, and its text still round-trips;
 *   4. a module that does not verify goes through shape-infer (the pass that repairs
 *      stale types, run before verification as `elide opt --passes=shape-infer,...`
 *      does) without a crash, and then through the other passes when it verifies. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;

/* Parses text; traps when the result and the error count disagree. */
static Module *
parse(const char *text, size_t len, Diag *d)
{
	SourceFile src = { .path = "fuzz.eir", .text = text, .len = len };
	int before = d->nerrors;
	Module *m = ir_parse_module(&src, d);
	if ((m != NULL) != (d->nerrors == before))
		__builtin_trap();
	return m;
}

/* Traps unless print(parse(print(m))) == print(m). */
static void
roundtrip(const Module *m, Diag *d)
{
	char *a = ir_print_module_str(m);
	Module *m2 = parse(a, strlen(a), d);
	if (!m2)
		__builtin_trap();
	char *b = ir_print_module_str(m2);
	if (strcmp(a, b) != 0)
		__builtin_trap();
	free(a);
	free(b);
	ir_free_module(m2);
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
	Diag d;
	diag_init(&d, devnull);
	Module *m = parse(text, size, &d);
	if (m) {
		roundtrip(m, &d);
		if (ir_verify(m, &d)) {
			PassOptions o = { .verify_each = true, .dump = devnull };
			if (!pass_run_pipeline(m, "shape-infer,const-fold,cse,dce", &o, &d))
				__builtin_trap();
			roundtrip(m, &d);
		} else {
			PassOptions o = { .verify_each = true, .dump = devnull };
			if (pass_run_pipeline(m, "shape-infer", &o, &d) &&
			    !pass_run_pipeline(m, "const-fold,cse,dce", &o, &d))
				__builtin_trap(); /* shape-infer's output verified: the rest must keep it so */
		}
		ir_free_module(m);
	}
	free(text);
	return 0;
}
