/* shape_infer.c - pass 'shape-infer': recomputes the type of every value.
 * Passes that change a param's shape (structured pruning) or an attribute leave the
 * annotations of the ops downstream stale; this pass brings them back in line with
 * ir_infer_type, the shape function the builder and the verifier share.
 * Algorithm, per entry:
 *   1. walk the ops in order (operands come first: SSA in one block);
 *   2. set each result type to ir_infer_type(op); report an op that no longer type
 *      checks at its location and go on, so every broken op is reported;
 *   3. 'ret' takes the type of its operand; a return type that changed from the
 *      entry's declared result is an error (the entry's signature is an interface).
 * Needs: operands defined before use.  Keeps: everything but the types. */
#include "passes/passes.h"

#include <stdlib.h>

bool
pass_shape_infer(Module *m, Diag *d)
{
	bool ok = true;
	char err[512], b1[96], b2[96];
	for (uint32_t k = 0; k < m->nfuncs; k++) {
		Func *f = m->funcs[k];
		bool *bad = xcalloc(f->nvals + 1, 1); /* values whose type could not be inferred */
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *op = &f->ops[i];
			if (op->dst >= f->nvals)
				continue;
			bool skip = false;
			for (uint32_t a = 0; a < op->nargs; a++)
				skip = skip || op->args[a] >= f->nvals || bad[op->args[a]] || f->vals[op->args[a]].def >= i;
			if (skip) {
				bad[op->dst] = true; /* reported at the first op that failed */
				continue;
			}
			if (op->code == OP_RET) {
				for (uint32_t a = 0; a < op->nargs && a < f->nrets; a++)
					if (!ir_type_eq(f->vals[op->args[a]].type, f->rets[a])) {
						diag_error(d, op->loc, "ret: entry '%s' is declared to return %s, but now returns %s",
						           f->name, ir_type_str(f->rets[a], b1, sizeof b1),
						           ir_type_str(f->vals[op->args[a]].type, b2, sizeof b2));
						ok = false;
					}
				if (op->nargs)
					f->vals[op->dst].type = f->vals[op->args[0]].type;
				continue;
			}
			Type t;
			if (!ir_infer_type(m, f, op, &t, err, sizeof err)) {
				diag_error(d, op->loc, "%s", err);
				bad[op->dst] = true;
				ok = false;
				continue;
			}
			f->vals[op->dst].type = t;
		}
		free(bad);
	}
	return ok;
}
