/* region.c - structured control flow: matching 'if', 'else', 'end' and 'phi'.
 * The op array stays one array in program order; regions nest like parentheses.
 * Algorithm of ir_match_regions, one forward walk with a stack of open 'if's:
 *   1. 'if' pushes itself; 'else' pairs with the top 'if' (at most once);
 *   2. 'end' pops the top 'if' and pairs with it: the if's partner becomes its 'else'
 *      (or the 'end' when there is none), the else's partner the 'end';
 *   3. a 'phi' must follow an 'end' directly or through other phis; it joins that
 *      end's 'if';
 *   4. at the end of the function the stack must be empty.
 * The verifier, the interpreter, CSE and codegen all use this one matching. */
#include "ir/ir.h"

#include <stdio.h>
#include <stdlib.h>

static bool
fail(char *err, size_t nerr, uint32_t *bad_op, uint32_t i, const char *msg)
{
	if (err && nerr)
		snprintf(err, nerr, "%s", msg);
	if (bad_op)
		*bad_op = i;
	return false;
}

bool
ir_match_regions(const Func *f, uint32_t *partner, char *err, size_t nerr, uint32_t *bad_op)
{
	uint32_t *stack = xmalloc((f->nops + 1) * sizeof *stack);
	uint32_t depth = 0, last_end = UINT32_MAX;
	bool ok = true;
	for (uint32_t i = 0; i < f->nops && ok; i++) {
		partner[i] = UINT32_MAX;
		switch (f->ops[i].code) {
		case OP_IF:
			stack[depth++] = i;
			break;
		case OP_ELSE:
			if (!depth)
				ok = fail(err, nerr, bad_op, i, "else: expected an open 'if', saw none");
			else if (partner[stack[depth - 1]] != UINT32_MAX)
				ok = fail(err, nerr, bad_op, i, "else: the 'if' already has an 'else'");
			else
				partner[stack[depth - 1]] = i;
			break;
		case OP_END: {
			if (!depth) {
				ok = fail(err, nerr, bad_op, i, "end: expected an open 'if', saw none");
				break;
			}
			uint32_t open = stack[--depth];
			if (partner[open] != UINT32_MAX)
				partner[partner[open]] = i; /* the else's partner is the end */
			else
				partner[open] = i;
			partner[i] = open;
			last_end = i;
			continue;
		}
		case OP_PHI:
			if (last_end == UINT32_MAX)
				ok = fail(err, nerr, bad_op, i, "phi: expected it right after an 'end'");
			else
				partner[i] = partner[last_end];
			continue;
		default:
			break;
		}
		last_end = UINT32_MAX;
	}
	if (ok && depth)
		ok = fail(err, nerr, bad_op, stack[depth - 1], "if: expected an 'end', saw the end of the function");
	free(stack);
	return ok;
}
