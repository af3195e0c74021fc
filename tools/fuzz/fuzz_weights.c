/* fuzz_weights.c - libFuzzer target for the weights readers on `elide run --interp`'s
 * path: the input is a weights file for a fixed small model (the tiny Llama of the
 * prune-structured tests, lowered once and parsed from its .eir text per input); it is written to a file and loaded with
 * ir_load_params, and when it loads, the default passes run and the interpreter
 * takes a decode step and a prefill.  Any bytes must give a message, never a crash,
 * a leak or a hang.  Oracles (a violation traps): a load that succeeds leaves every
 * param with finite data; the passes succeed on a loaded model. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static FILE *devnull;
static char path[64];
static char *model_text; /* the lowered model as .eir text, parsed afresh per input */

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!devnull) {
		devnull = fopen("/dev/null", "w");
		snprintf(path, sizeof path, "/tmp/fuzz_weights.%ld.safetensors", (long)getpid());
		static Diag d0; /* the front end keeps its sources registered here */
		diag_init(&d0, stderr);
		Module *m0 = fe_load(ELIDE_FUZZ_MODEL, NULL, &d0);
		if (!m0)
			__builtin_trap();
		model_text = ir_print_module_str(m0);
		ir_free_module(m0);
	}
	FILE *f = fopen(path, "wb");
	if (!f)
		return 0;
	fwrite(data, 1, size, f);
	fclose(f);
	Diag d;
	diag_init(&d, devnull);
	SourceFile src = { .path = "tiny.eir", .text = model_text, .len = strlen(model_text) };
	Module *m = ir_parse_module(&src, &d);
	if (!m)
		__builtin_trap(); /* the printed model always parses */
	if (ir_load_params(m, path, &d)) {
		for (uint32_t i = 0; i < m->nparams; i++) {
			const Param *p = &m->params[i];
			int64_t n = ir_type_numel(p->type);
			if (!p->data)
				__builtin_trap();
			for (int64_t k = 0; k < n; k++)
				if (!(p->data[k] - p->data[k] == 0.0f))
					__builtin_trap(); /* NaN or infinity accepted */
		}
		if (!pass_run_default(m, &d))
			__builtin_trap();
		InterpState *s = interp_new(m);
		float out[4096];
		char err[256];
		int32_t toks[3] = { 1, 2, 3 };
		interp_run(s, "step", toks, 1, 0, out, err, sizeof err);
		interp_reset(s);
		interp_run(s, "prefill", toks, 3, 0, out, err, sizeof err);
		interp_free(s);
	}
	ir_free_module(m);
	return 0;
}
