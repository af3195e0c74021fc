/* test_interp_robust.c - the interpreter never crashes on malformed IR: 10,000 seeded
 * random mutations of the ops of a small Llama (attributes, operands, opcodes,
 * operand counts) give either a result or a clean message (run under ASan too). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ir/ir.h"
#include "tests/support/randmodel.h"

Test(interp_robust, random_op_mutations)
{
	RmConfig c = { .dim = 16, .layers = 2, .heads = 4, .kv_heads = 2, .ffn = 24, .vocab = 32, .ctx = 8, .seed = 3 };
	const char *path = ELIDE_BINARY_DIR "/robust.safetensors";
	cr_assert(rm_write_model(&c, path));
	Module *m = rm_build_module(&c, "llama");
	Diag d;
	diag_init(&d, stderr);
	cr_assert(ir_load_params(m, path, &d));
	remove(path);
	RmRng rng = { 99 };
	float *out = malloc(64 * sizeof *out);
	int failed = 0, ran = 0;
	for (int trial = 0; trial < 10000; trial++) {
		Func *f = m->funcs[trial % 2];
		int nmut = 1 + (int)(rm_rng_next(&rng) % 3);
		uint32_t at[3];
		Op saved[3];
		for (int k = 0; k < nmut; k++) {
			at[k] = (uint32_t)(rm_rng_next(&rng) % f->nops);
			saved[k] = f->ops[at[k]];
			Op *op = &f->ops[at[k]];
			switch (rm_rng_next(&rng) % 5) {
			case 0: op->ia[rm_rng_next(&rng) % 4] = (int64_t)(rm_rng_next(&rng) % 80) - 10; break;
			case 1:
				if (op->nargs)
					op->args[rm_rng_next(&rng) % op->nargs] = (ValueId)(rm_rng_next(&rng) % (f->nvals + 3));
				break;
			case 2: op->code = (Opcode)(rm_rng_next(&rng) % OP_COUNT); break;
			case 3: op->nargs = (uint8_t)(rm_rng_next(&rng) % (IR_MAX_OPERANDS + 1)); break;
			default: op->fa[0] = rm_rng_uniform(&rng, -5, 5); break;
			}
		}
		InterpState *s = interp_new(m);
		char err[256] = "";
		int32_t toks[4] = { 1, 2, 3, (int32_t)(rm_rng_next(&rng) % 40) };
		bool ok = trial % 2 ? interp_run(s, "prefill", toks, 1 + trial % 4, 0, out, err, sizeof err)
		                    : interp_run(s, "step", toks + 3, 1, trial % 10, out, err, sizeof err);
		if (!ok) {
			cr_assert(err[0], "trial %d: failure without a message", trial);
			failed++;
		}
		ran++;
		interp_free(s);
		for (int k = nmut - 1; k >= 0; k--)
			f->ops[at[k]] = saved[k];
	}
	cr_log_info("%d runs, %d clean errors", ran, failed);
	cr_expect(failed > 3000, "mutations should mostly be caught (%d)", failed);
	free(out);
	ir_free_module(m);
}
