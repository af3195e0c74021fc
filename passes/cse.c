/* cse.c - pass 'cse': common subexpression elimination.
 * Two pure ops of the same layer region with the same opcode, operands, attributes
 * and result type compute the same value; the later one is replaced by the earlier.
 * 'add' and 'mul' are commutative: their operands are compared in sorted order.
 * Ops of different layer regions are never merged, so each layer keeps its own ops
 * (layer-level passes can still drop or specialise a layer on its own); nor are ops
 * of different branches (the earlier value would not reach the later use), nor
 * phis of different regions (ir_match_regions: the 'if' a phi joins).
 * Algorithm, per entry:
 *   1. walk the ops in order, first renaming operands through the replacements made
 *      so far (earlier ops are final when a later op is looked at);
 *   2. hash each pure op's key (code, layer, sorted operands, attribute bits, type)
 *      into an open-addressing table of earlier ops; on a match, record
 *      replacement[dst] = the earlier value and drop the op;
 *   3. rebuild the op array with the replacements applied.
 * Needs: operands defined before use.  Keeps: layer regions, value types. */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct Key {
	Opcode code;
	int32_t layer;
	uint32_t scope;      /* the innermost branch opener ('if' or 'else'); a phi: its 'if' */
	uint8_t nargs;
	ValueId args[IR_MAX_OPERANDS];
	int64_t ia[IR_NIA];
	float fa[IR_NFA];
	Type type;
} Key;

/* Writes op's key into *k, padding zeroed: keys are hashed and compared as bytes. */
static void
key_of(const Func *f, const Op *op, uint32_t scope, Key *k)
{
	memset(k, 0, sizeof *k);
	k->code = op->code;
	k->layer = op->layer;
	k->scope = scope;
	k->nargs = op->nargs;
	memcpy(k->args, op->args, op->nargs * sizeof *op->args);
	if ((op->code == OP_ADD || op->code == OP_MUL) && k->args[0] > k->args[1]) {
		ValueId t = k->args[0];
		k->args[0] = k->args[1];
		k->args[1] = t;
	}
	memcpy(k->ia, op->ia, sizeof k->ia);
	memcpy(k->fa, op->fa, sizeof k->fa);
	const Type *t = &f->vals[op->dst].type;
	k->type.dtype = t->dtype;
	k->type.rank = t->rank;
	k->type.dyn0 = t->dyn0;
	memcpy(k->type.dims, t->dims, sizeof t->dims);
}

bool
pass_cse(Module *m, Diag *d)
{
	(void)d;
	for (uint32_t fi = 0; fi < m->nfuncs; fi++) {
		Func *f = m->funcs[fi];
		uint32_t cap = 16;
		while (cap < 2 * f->nops + 2)
			cap *= 2;
		uint32_t *table = xmalloc(cap * sizeof *table); /* op index + 1, 0 = empty */
		memset(table, 0, cap * sizeof *table);
		Key *keys = xmalloc((f->nops + 1) * sizeof *keys);
		ValueId *repl = xmalloc((f->nvals + 1) * sizeof *repl);
		bool *keep = xmalloc((f->nops + 1) * sizeof *keep);
		for (uint32_t v = 0; v < f->nvals; v++)
			repl[v] = IR_NO_VALUE;
		/* per op its branch (the opener on top of a stack of open branches), per phi its region */
		uint32_t *scope = xmalloc((f->nops + 1) * sizeof *scope), *stack = xmalloc((f->nops + 1) * sizeof *stack);
		uint32_t *partner = xmalloc((f->nops + 1) * sizeof *partner), depth = 0;
		bool regions = ir_match_regions(f, partner, NULL, 0, NULL);
		for (uint32_t i = 0; i < f->nops; i++) {
			Opcode c = f->ops[i].code;
			if ((c == OP_ELSE || c == OP_END) && depth)
				depth--;
			scope[i] = c == OP_PHI && regions ? partner[i] : depth ? stack[depth - 1] : UINT32_MAX;
			if (c == OP_IF || c == OP_ELSE)
				stack[depth++] = i;
		}
		bool changed = false;
		for (uint32_t i = 0; i < f->nops; i++) {
			Op *op = &f->ops[i];
			keep[i] = true;
			for (uint32_t a = 0; a < op->nargs; a++)
				if (op->args[a] < f->nvals && repl[op->args[a]] != IR_NO_VALUE)
					op->args[a] = repl[op->args[a]];
			if ((unsigned)op->code >= OP_COUNT || !(ir_op_flags[op->code] & OPF_PURE) || op->dst >= f->nvals)
				continue;
			key_of(f, op, scope[i], &keys[i]);
			uint64_t h = hash_bytes(&keys[i], sizeof keys[i], 0);
			uint32_t s = (uint32_t)h & (cap - 1);
			while (table[s] && memcmp(&keys[table[s] - 1], &keys[i], sizeof keys[i]) != 0)
				s = (s + 1) & (cap - 1);
			if (table[s]) {
				repl[op->dst] = f->ops[table[s] - 1].dst;
				keep[i] = false;
				changed = true;
			} else {
				table[s] = i + 1;
			}
		}
		if (changed)
			pass_rebuild_func(m, f, keep, repl);
		free(scope);
		free(stack);
		free(partner);
		free(table);
		free(keys);
		free(repl);
		free(keep);
	}
	return true;
}
