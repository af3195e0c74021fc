/* dce.c - pass 'dce': dead code elimination.
 * An op is dead when it is pure (OPF_PURE in ops.def: no effect besides its value)
 * and no live op uses its value.  'arg' ops stay (they are the entry's signature),
 * 'attention' stays (it writes the KV cache) and 'ret' stays.
 * Algorithm, per entry:
 *   1. count the uses of every value;
 *   2. walk the ops backwards (uses come after definitions, so one walk finds chains
 *      of dead ops): a pure op whose value has no uses is dead; its operands each
 *      lose one use;
 *   3. rebuild the op array without the dead ops (value ids renumbered in order).
 * Needs: operands defined before use.  Keeps: layer regions (ops are only removed). */
#include "passes/passes.h"

#include <stdlib.h>

bool
pass_dce(Module *m, Diag *d)
{
	(void)d;
	for (uint32_t k = 0; k < m->nfuncs; k++) {
		Func *f = m->funcs[k];
		uint32_t *uses = xcalloc(f->nvals + 1, sizeof *uses);
		bool *keep = xmalloc((f->nops + 1) * sizeof *keep);
		bool changed = false;
		for (uint32_t i = 0; i < f->nops; i++)
			for (uint32_t a = 0; a < f->ops[i].nargs; a++)
				if (f->ops[i].args[a] < f->nvals)
					uses[f->ops[i].args[a]]++;
		for (uint32_t i = f->nops; i-- > 0;) {
			const Op *op = &f->ops[i];
			bool pure = (unsigned)op->code < OP_COUNT && (ir_op_flags[op->code] & OPF_PURE);
			keep[i] = !pure || op->dst >= f->nvals || uses[op->dst] > 0;
			if (keep[i])
				continue;
			changed = true;
			for (uint32_t a = 0; a < op->nargs; a++)
				if (op->args[a] < f->nvals)
					uses[op->args[a]]--;
		}
		if (changed)
			pass_rebuild_func(m, f, keep, NULL);
		free(uses);
		free(keep);
	}
	return true;
}
