/* row_sink.c - pass 'row-sink': compute only the rows a result needs.
 * A prefill returns the logits of its last row (`row %h {index = -1}` after the last
 * layer) and an encoder pools row 0; the ops before the row compute all T rows.
 * Row-wise ops commute with row: row(f(a, b), i) == f(row(a, i), row(b, i)), so
 * the row moves up through them and they run on one row (linear as a GEMV).
 * Algorithm, per entry:
 *   1. count the uses of every value and find each op's branch (the innermost
 *      'if' or 'else' it lies in: sinking never crosses a region boundary), and the
 *      entry's token argument (i32[T]: the rows' positions come from it);
 *   2. walk the ops backwards, so that every use of a value is seen before its
 *      definition: a `row(x, i)` asks for row i of x; a row-wise op whose every use
 *      asks for the same row i, in its own branch, is marked to run on row i and
 *      asks in turn for row i of each operand carrying the T rows.  The row-wise ops
 *      and those operands:
 *        elementwise ops: every operand of the result's rank (a broadcast b[N]
 *          stays as it is), linear: x (W unchanged), rmsnorm, layernorm and
 *          softmax: x, rope: x, with its position replaced by the row's,
 *          row(positions(tokens, pos), i) (rope of one row at position p is the
 *          row at p), when the entry has a token argument;
 *        attention (dense only, never attention_quest or attention_block): q, and
 *          the op takes its one-row form (row = i): k and v keep their T rows (all
 *          are written to the cache), the one query row attends over
 *          cache[0..pos + r], or over all T rows without a cache;
 *      a value with a use that needs all rows (or another row) runs in full;
 *   3. an operand of a marked op whose definition runs in full is wrapped in a new
 *      `row(operand, i)` (sinking stops there); a row op whose operand's definition
 *      is marked is dropped, its uses take the marked op's value;
 *   4. rebuild the op array: each new row op (and rope's positions and row) right
 *      before the op that reads it, in that op's layer; marked ops get the row's
 *      type (their first axis dropped).
 * Nothing becomes dead (an op that runs in full still has a full use); cse merges
 * the rows of one value that several one-row ops asked for.
 * Needs: operands defined before use.  Keeps: layer regions, the step entries
 * (their values have no rows to drop). */
#include "passes/passes.h"

#include <stdlib.h>
#include <string.h>

typedef struct Sink {
	Func *f;
	uint32_t *uses;      /* per value: the ops reading it (each operand slot counts) */
	uint32_t *scope;     /* per op: its innermost branch opener, UINT32_MAX at the top */
	bool *marked;        /* per op: runs on one row */
	int64_t *index;      /* per marked op, or op with wrapped operands: the row index */
	uint8_t *wrap;       /* per op: bit s set when operand s is wrapped in a new row op */
	bool *drop;          /* per op: a row op that sank (its value is its operand's) */
	uint32_t *want;      /* per value: its uses that take one row of it */
	int64_t *windex;     /* per value: the row they take */
	uint32_t *wscope;    /* per value: the branch they are in */
	bool *mixed;         /* per value: uses take different rows or lie in different branches */
	ValueId tokens;      /* the entry's token argument i32[T] (IR_NO_VALUE: none) */
	bool changed;
} Sink;

/* Step 1: uses, branches, the token argument. */
static void
sink_init(Sink *s, Func *f)
{
	memset(s, 0, sizeof *s);
	s->f = f;
	s->uses = xcalloc(f->nvals + 1, sizeof *s->uses);
	s->scope = xmalloc((f->nops + 1) * sizeof *s->scope);
	s->marked = xcalloc(f->nops + 1, sizeof *s->marked);
	s->index = xcalloc(f->nops + 1, sizeof *s->index);
	s->wrap = xcalloc(f->nops + 1, sizeof *s->wrap);
	s->drop = xcalloc(f->nops + 1, sizeof *s->drop);
	s->want = xcalloc(f->nvals + 1, sizeof *s->want);
	s->windex = xcalloc(f->nvals + 1, sizeof *s->windex);
	s->wscope = xcalloc(f->nvals + 1, sizeof *s->wscope);
	s->mixed = xcalloc(f->nvals + 1, sizeof *s->mixed);
	s->tokens = IR_NO_VALUE;
	uint32_t *stack = xmalloc((f->nops + 1) * sizeof *stack), depth = 0;
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		for (uint32_t a = 0; a < op->nargs; a++)
			if (op->args[a] < f->nvals)
				s->uses[op->args[a]]++;
		if ((op->code == OP_ELSE || op->code == OP_END) && depth)
			depth--;
		s->scope[i] = depth ? stack[depth - 1] : UINT32_MAX;
		if (op->code == OP_IF || op->code == OP_ELSE)
			stack[depth++] = i;
		if (op->code == OP_ARG && op->dst < f->nvals && s->tokens == IR_NO_VALUE &&
		    f->vals[op->dst].type.dtype == DT_I32 && f->vals[op->dst].type.rank == 1)
			s->tokens = op->dst;
	}
	free(stack);
}

static void
sink_free(Sink *s)
{
	free(s->uses);
	free(s->scope);
	free(s->marked);
	free(s->index);
	free(s->wrap);
	free(s->drop);
	free(s->want);
	free(s->windex);
	free(s->wscope);
	free(s->mixed);
}

/* Which operand slots of op carry the rows of its result (step 3's list); 0 when
 * op is not row-wise. */
static unsigned
row_slots(const Sink *s, const Op *op)
{
	const Func *f = s->f;
	if ((unsigned)op->code >= OP_COUNT || op->dst >= f->nvals)
		return 0;
	Type t = f->vals[op->dst].type;
	if (t.rank != 2 || t.dtype != DT_F32)
		return 0;
	if (ir_op_flags[op->code] & OPF_ELEMWISE) {
		unsigned m = 0;
		for (uint32_t a = 0; a < op->nargs; a++)
			if (f->vals[op->args[a]].type.rank == t.rank)
				m |= 1u << a;
		return m;
	}
	switch (op->code) {
	case OP_LINEAR:
	case OP_RMSNORM:
	case OP_LAYERNORM:
	case OP_SOFTMAX:
		return 1;
	case OP_ROPE: {
		Type tk = s->tokens != IR_NO_VALUE ? f->vals[s->tokens].type : (Type){ 0 };
		return tk.rank == 1 && tk.dyn0 == t.dyn0 && tk.dims[0] == t.dims[0] ? 1 : 0;
	}
	case OP_ATTENTION: /* the full form only: q with the rows of k */
		return f->vals[op->args[0]].type.rank == 2 && f->vals[op->args[1]].type.rank == 2 ? 1 : 0;
	default:
		return 0;
	}
}

/* Op `user` (in branch sc) takes row i of value v. */
static void
want(Sink *s, ValueId v, int64_t i, uint32_t sc)
{
	if (s->want[v] == 0) {
		s->windex[v] = i;
		s->wscope[v] = sc;
	} else if (s->windex[v] != i || s->wscope[v] != sc) {
		s->mixed[v] = true;
	}
	s->want[v]++;
}

/* Steps 2 and 3: backwards (every use of a value is seen before its definition),
 * an op runs on row i when each use of its value takes row i in its branch; then
 * the row operands of the marked ops whose definition runs in full are wrapped,
 * and the row ops whose operand runs on their row are dropped. */
static void
plan(Sink *s)
{
	Func *f = s->f;
	for (uint32_t i = f->nops; i-- > 0;) {
		const Op *op = &f->ops[i];
		if (op->code == OP_ROW && op->nargs == 1 && op->args[0] < f->nvals && f->vals[op->args[0]].type.rank == 2) {
			want(s, op->args[0], op->ia[0], s->scope[i]);
			continue;
		}
		ValueId v = op->dst;
		unsigned slots = row_slots(s, op);
		if (!slots || s->uses[v] == 0 || s->want[v] != s->uses[v] || s->mixed[v] || s->wscope[v] != s->scope[i])
			continue;
		s->marked[i] = true;
		s->index[i] = s->windex[v];
		for (uint32_t a = 0; a < op->nargs; a++)
			if (slots >> a & 1)
				want(s, op->args[a], s->index[i], s->scope[i]);
	}
	for (uint32_t i = 0; i < f->nops; i++) {
		const Op *op = &f->ops[i];
		if (op->code == OP_ROW && op->nargs == 1 && op->args[0] < f->nvals && s->marked[f->vals[op->args[0]].def])
			s->drop[i] = s->changed = true;
		unsigned slots = s->marked[i] ? row_slots(s, op) : 0;
		for (uint32_t a = 0; a < op->nargs; a++)
			if ((slots >> a & 1) && !s->marked[f->vals[op->args[a]].def])
				s->wrap[i] |= (uint8_t)(1u << a);
	}
}

/* The type of one row of t: its first axis dropped. */
static Type
row_type(Type t)
{
	Type r = t;
	r.rank = (uint8_t)(t.rank - 1);
	r.dyn0 = false;
	for (int k = 0; k + 1 < t.rank; k++)
		r.dims[k] = t.dims[k + 1];
	r.dims[t.rank - 1] = 0;
	return r;
}

/* The op array being built (step 4). */
typedef struct Out {
	Op *ops;
	Value *vals;
	uint32_t n;
} Out;

static ValueId
out_op(Out *o, Op op, Type t, const char *name)
{
	op.dst = o->n;
	o->vals[o->n] = (Value){ .type = t, .def = o->n, .name = name };
	o->ops[o->n] = op;
	return o->n++;
}

/* A new row op: row i of v (new id), typed, before op `at`. */
static ValueId
out_row(Out *o, ValueId v, int64_t i, const Op *at)
{
	Op r = { .code = OP_ROW, .nargs = 1, .args = { v }, .ia = { i }, .layer = at->layer, .loc = at->loc };
	return out_op(o, r, row_type(o->vals[v].type), NULL);
}

/* Step 4 for one op: its wrapped operands and rope's position first, then the op. */
static void
rebuild_op(const Sink *s, Out *o, ValueId *map, uint32_t i)
{
	const Func *f = s->f;
	Op op = f->ops[i];
	for (uint32_t a = 0; a < op.nargs; a++)
		op.args[a] = op.args[a] < f->nvals ? map[op.args[a]] : IR_NO_VALUE;
	if (s->drop[i]) {
		map[op.dst] = op.args[0];
		return;
	}
	if (op.dst >= f->nvals) { /* no value (the verifier refuses it): kept as it is */
		out_op(o, op, ir_type_scalar(DT_BOOL), NULL);
		return;
	}
	for (uint32_t a = 0; a < op.nargs; a++)
		if (s->wrap[i] >> a & 1)
			op.args[a] = out_row(o, op.args[a], s->index[i], &op);
	Type t = f->vals[op.dst].type;
	ValueId old = op.dst;
	if (s->marked[i]) {
		t = row_type(t);
		if (op.code == OP_ATTENTION)
			op.ia[3] = s->index[i];
		if (op.code == OP_ROPE) {
			Op p = { .code = OP_POSITIONS, .nargs = 2, .args = { map[s->tokens], op.args[1] }, .layer = op.layer,
				 .loc = op.loc };
			op.args[1] = out_row(o, out_op(o, p, f->vals[s->tokens].type, NULL), s->index[i], &op);
		}
	}
	map[old] = out_op(o, op, t, f->vals[old].name);
}

static void
rebuild(Sink *s)
{
	Func *f = s->f;
	uint32_t cap = 4 * f->nops + 4; /* each op adds at most 3 (two wrapped operands, or rope's two) */
	Out o = { xmalloc(cap * sizeof *o.ops), xcalloc(cap, sizeof *o.vals), 0 };
	ValueId *map = xmalloc((f->nvals + 1) * sizeof *map);
	for (uint32_t v = 0; v < f->nvals; v++)
		map[v] = IR_NO_VALUE;
	for (uint32_t i = 0; i < f->nops; i++)
		rebuild_op(s, &o, map, i);
	for (uint32_t v = 0; v < f->nvals; v++)
		free(f->vals[v].uses);
	free(f->ops);
	free(f->vals);
	free(map);
	f->ops = o.ops;
	f->vals = o.vals;
	f->nops = f->nvals = o.n;
	f->capops = f->capvals = cap;
}

static void
sink_func(Func *f)
{
	Sink s;
	sink_init(&s, f);
	plan(&s);
	if (s.changed)
		rebuild(&s);
	sink_free(&s);
}

bool
pass_row_sink(Module *m, Diag *d)
{
	(void)d;
	for (uint32_t k = 0; k < m->nfuncs; k++)
		sink_func(m->funcs[k]);
	return true;
}
