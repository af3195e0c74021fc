/* lower_ops.c - tensor expressions of fn and entry bodies, lowered to IR ops.
 * Names resolve to values of the current frame, then to model weights (a PARAM op
 * per use), then to fns (inlined by lower.c).  Calls of ops check their arity,
 * named arguments and integer attributes here; operand shapes are checked as each
 * op is built, with both shapes in the message.  `x * c` and `x / c` with a
 * constant c become SCALE; `-x` is SCALE by -1. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

/* Last extent of a tensor type (1 for scalars). */
static int64_t
last(Type t)
{
	return t.rank ? t.dims[t.rank - 1] : 1;
}

/* Builds an op through the IR builder (ir_b_op): ir_infer_type is the one authority
 * on types, and its errors name every operand's type, so both shapes of a mismatch
 * are shown.  Stops after 2^20 ops (unrolled loops and inlined calls). */
ValueId
lw_emit(Lower *L, Opcode code, const ValueId *args, uint32_t nargs, const int64_t *ia, const float *fa,
        Loc loc)
{
	for (uint32_t i = 0; i < nargs; i++)
		if (args[i] == IR_NO_VALUE)
			return IR_NO_VALUE;
	if (L->stop)
		return IR_NO_VALUE;
	if (--L->nops_left < 0) {
		diag_error(L->d, loc, "entry too large: more than %d ops after unrolling and inlining", 1 << 20);
		L->stop = true;
		return IR_NO_VALUE;
	}
	Builder b = { .m = L->m, .f = L->f, .layer = L->layer, .diag = L->d };
	return ir_b_op(&b, code, args, nargs, ia, fa, loc);
}

static ValueId
const_i32(Lower *L, int64_t v, Loc loc)
{
	int64_t ia[IR_NIA] = { v };
	return lw_emit(L, OP_CONST, NULL, 0, ia, NULL, loc);
}

/* ---- calls of ops ---- */

typedef struct OpSpec {
	const char *name;
	Opcode code;
	int nmin, nmax;           /* positional arguments */
	const char *named[8];     /* accepted named arguments */
} OpSpec;

/* The ops with more than one operand or with attributes; an elementwise op of one
 * operand without attributes (silu, tanh, ...) is called by its ops.def name. */
static const OpSpec specs[] = {
	{ "embed", OP_EMBED, 2, 2, { 0 } },
	{ "linear", OP_LINEAR, 2, 2, { 0 } },
	{ "rmsnorm", OP_RMSNORM, 2, 2, { "eps" } },
	{ "layernorm", OP_LAYERNORM, 3, 3, { "eps" } },
	{ "rope", OP_ROPE, 2, 3, { "heads", "theta", "style", "factor", "low_freq_factor", "high_freq_factor", "original_ctx" } },
	{ "attention", OP_ATTENTION, 3, 7, { "heads", "kv_heads" } },
	{ "gelu", OP_GELU, 1, 1, { "approx" } },
	{ "softmax", OP_SOFTMAX, 1, 1, { 0 } },
	{ "argmax", OP_ARGMAX, 1, 1, { 0 } },
	{ "positions", OP_POSITIONS, 2, 2, { 0 } },
	{ "row", OP_ROW, 2, 2, { 0 } },
	{ "slice", OP_SLICE, 3, 3, { 0 } },
	{ "concat", OP_CONCAT, 2, IR_MAX_OPERANDS, { 0 } },
};

typedef struct CallArgs {
	const Ast *pos[IR_MAX_OPERANDS];
	int npos;
	const Ast *named[8];      /* by index in OpSpec.named; NULL if absent */
} CallArgs;

/* Sorts a call's arguments into positional and named ones, checking arity. */
static bool
call_args(Lower *L, const Ast *call, const OpSpec *sp, CallArgs *ca)
{
	memset(ca, 0, sizeof *ca);
	bool ok = true, seen_named = false;
	int npos = 0;
	for (const Ast *a = call->kids; a; a = a->next) {
		if (a->kind != AST_NAMED) {
			if (seen_named) {
				diag_error(L->d, a->loc, "positional argument after a named one");
				ok = false;
			}
			if (npos < IR_MAX_OPERANDS)
				ca->pos[npos] = a;
			npos++;
			continue;
		}
		seen_named = true;
		int k = -1;
		for (int i = 0; i < 8 && sp->named[i]; i++)
			if (strcmp(sp->named[i], a->name) == 0)
				k = i;
		if (k < 0) {
			diag_error(L->d, a->loc, "unknown argument '%s' for '%s'", a->name, sp->name);
			ok = false;
		} else if (ca->named[k]) {
			diag_error(L->d, a->loc, "argument '%s' given twice", a->name);
			diag_note(L->d, ca->named[k]->loc, "first given here");
			ok = false;
		} else {
			ca->named[k] = a;
		}
	}
	ca->npos = npos < IR_MAX_OPERANDS ? npos : IR_MAX_OPERANDS;
	if (npos < sp->nmin || npos > sp->nmax) {
		if (sp->nmin == sp->nmax)
			diag_error(L->d, call->loc, "'%s' takes %d argument%s, got %d", sp->name, sp->nmin,
			           sp->nmin == 1 ? "" : "s", npos);
		else
			diag_error(L->d, call->loc, "'%s' takes %d to %d arguments, got %d", sp->name, sp->nmin, sp->nmax, npos);
		return false;
	}
	return ok;
}

/* A positive float option (eps, theta) with its default. */
static bool
opt_pos_float(Lower *L, const Ast *named, double dflt, float *out)
{
	*out = (float)dflt;
	if (!named)
		return true;
	Num v;
	if (!lw_eval_num(L, named->a, &v))
		return false;
	if (!(v.v > 0) || !isfinite((float)v.v)) {
		diag_error(L->d, named->a->loc, "'%s' must be a positive number, saw %g", named->name, v.v);
		return false;
	}
	*out = (float)v.v;
	return true;
}

/* RoPE scaling (named arguments 3..6 of rope): `factor` alone is linear scaling;
 * with `low_freq_factor`, `high_freq_factor` and `original_ctx` (all three) it is
 * Llama 3's.  Fills fa[1..3] and ia[3] (ops.def). */
static bool
rope_scaling(Lower *L, const Ast *call, const CallArgs *ca, int64_t *ia, float *fa)
{
	const Ast *factor = ca->named[3], *low = ca->named[4], *high = ca->named[5], *orig = ca->named[6];
	if (!factor && !low && !high && !orig)
		return true;
	if (!factor || !low != !high || !low != !orig) {
		diag_error(L->d, call->loc, "rope scaling takes 'factor' alone (linear) or with 'low_freq_factor', "
		           "'high_freq_factor' and 'original_ctx' (llama3)");
		return false;
	}
	if (!opt_pos_float(L, factor, 1.0, &fa[1]))
		return false;
	if (!low)
		return true;
	if (!opt_pos_float(L, low, 1.0, &fa[2]) || !opt_pos_float(L, high, 1.0, &fa[3]) ||
	    !lw_eval_int(L, orig->a, "'original_ctx'", &ia[3]))
		return false;
	if (ia[3] <= 0) {
		diag_error(L->d, orig->a->loc, "'original_ctx' must be positive, saw %lld", (long long)ia[3]);
		return false;
	}
	if (!(fa[3] > fa[2])) {
		diag_error(L->d, high->a->loc, "'high_freq_factor' must be larger than 'low_freq_factor', saw %g and %g",
		           (double)fa[3], (double)fa[2]);
		return false;
	}
	return true;
}

/* An option given as a word among `words` (index returned in *out) or as its index. */
static bool
opt_word(Lower *L, const Ast *named, const char *const *words, int nwords, int *out)
{
	if (!named)
		return true;
	const Ast *v = named->a;
	if (v->kind == AST_IDENT && !lw_local(L, v->name) && !lw_find(L, v->name)) {
		for (int i = 0; i < nwords; i++)
			if (strcmp(words[i], v->name) == 0) {
				*out = i;
				return true;
			}
	}
	char list[128] = "";
	for (int i = 0; i < nwords; i++)
		snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? " or " : "", words[i]);
	diag_error(L->d, v->loc, "'%s' must be %s", named->name, list);
	return false;
}

/* Heads count: positional argument `p` or the named one, positive. */
static bool
heads_arg(Lower *L, const Ast *p, const Ast *named, const char *what, const Ast *call, int64_t *out)
{
	if (p && named) {
		diag_error(L->d, named->loc, "'%s' given both by position and by name", what);
		return false;
	}
	const Ast *e = p ? p : named ? named->a : NULL;
	if (!e) {
		diag_error(L->d, call->loc, "'%s' needs '%s'", call->name, what);
		return false;
	}
	if (!lw_eval_int(L, e, what, out))
		return false;
	if (*out <= 0) {
		diag_error(L->d, e->loc, "'%s' must be positive, saw %lld", what, (long long)*out);
		return false;
	}
	return true;
}

/* Resolves the cache argument of attention (kv[l] or a plain state) to a state index. */
static int32_t
state_arg(Lower *L, const Ast *e)
{
	MSym *s = (e->kind == AST_INDEX || e->kind == AST_IDENT) && !lw_local(L, e->name) ? lw_find(L, e->name) : NULL;
	if (!s || s->kind != SYM_STATE) {
		diag_error(L->d, e->loc, "argument 4 of 'attention' must be a kv cache such as 'kv[l]'");
		return -1;
	}
	if (s->bad)
		return -1;
	if (e->kind == AST_IDENT) {
		if (s->indexed) {
			diag_error(L->d, e->loc, "'%s' is indexed by layer: write '%s[l]'", e->name, e->name);
			return -1;
		}
		return s->param;
	}
	int64_t idx;
	if (!s->indexed) {
		diag_error(L->d, e->loc, "'%s' is not indexed", e->name);
		return -1;
	}
	if (!lw_eval_int(L, e->a, "an index", &idx))
		return -1;
	if (idx < 0 || idx >= s->nslots || s->slots[idx] < 0) {
		diag_error(L->d, e->a->loc, "'%s[%lld]' is not defined", e->name, (long long)idx);
		diag_note(L->d, s->loc, "'%s' is defined here", e->name);
		return -1;
	}
	return s->slots[idx];
}

/* attention(q, k, v, CACHE, pos, heads[, kv_heads]) | attention(q, k, v, heads = H[, kv_heads = K]) */
static ValueId
lower_attention(Lower *L, const Ast *call, const CallArgs *ca, ValueId *v)
{
	int64_t ia[IR_NIA] = { 0, 0, -1, 0 };
	const Ast *hpos = NULL, *khpos = NULL;
	int32_t st = -1;
	if (ca->npos == 3) {
		v[3] = const_i32(L, 0, call->loc); /* bidirectional: no cache, position unused */
	} else if (ca->npos >= 5) {
		st = state_arg(L, ca->pos[3]);
		v[3] = lw_expr(L, ca->pos[4]);
		hpos = ca->npos > 5 ? ca->pos[5] : NULL;
		khpos = ca->npos > 6 ? ca->pos[6] : NULL;
		if (st < 0)
			return IR_NO_VALUE;
	} else {
		diag_error(L->d, call->loc, "'attention' takes (q, k, v, heads = H) or (q, k, v, cache, pos, heads, "
		           "kv_heads), got %d positional arguments", ca->npos);
		return IR_NO_VALUE;
	}
	if (!heads_arg(L, hpos, ca->named[0], "heads", call, &ia[0]))
		return IR_NO_VALUE;
	ia[1] = ia[0];
	if ((khpos || ca->named[1]) && !heads_arg(L, khpos, ca->named[1], "kv_heads", call, &ia[1]))
		return IR_NO_VALUE;
	ia[2] = st;
	if (st >= 0 && v[0] != IR_NO_VALUE && ia[0] > 0) {
		const State *s = &L->m->states[st];
		int64_t hd = last(ir_vtype(L->f, v[0])) / ia[0];
		if (s->kv_heads != ia[1] || s->head_dim != hd) {
			char sname[160];
			snprintf(sname, sizeof sname, "%s", s->name);
			char *dot = strrchr(sname, '.');
			if (dot && ca->pos[3]->kind == AST_INDEX)
				snprintf(dot, sizeof sname - (size_t)(dot - sname), "[%d]", s->layer);
			diag_error(L->d, ca->pos[3]->loc, "kv cache '%s' holds %lld heads of %lld, but attention uses %lld kv "
			           "heads of %lld", sname, (long long)s->kv_heads, (long long)s->head_dim, (long long)ia[1],
			           (long long)hd);
			return IR_NO_VALUE;
		}
		if (L->f->kind == FN_FORWARD) {
			diag_error(L->d, ca->pos[3]->loc, "a 'forward' entry has no position: use attention(q, k, v, heads = H)");
			return IR_NO_VALUE;
		}
	}
	return lw_emit(L, OP_ATTENTION, v, 4, ia, NULL, call->loc);
}

static ValueId
lower_op(Lower *L, const Ast *call, const OpSpec *sp)
{
	CallArgs ca;
	if (!call_args(L, call, sp, &ca))
		return IR_NO_VALUE;
	ValueId v[IR_MAX_OPERANDS];
	int64_t ia[IR_NIA] = { 0 };
	float fa[IR_NFA] = { 0 };
	int nval = ca.npos; /* positional arguments that are tensors */
	switch (sp->code) {
	case OP_ROPE:
	case OP_ROW:
		nval = 2;
		if (sp->code == OP_ROW)
			nval = 1;
		break;
	case OP_SLICE:
		nval = 1;
		break;
	case OP_ATTENTION:
		nval = 3;
		break;
	default:
		break;
	}
	bool ok = true;
	for (int i = 0; i < nval; i++)
		if ((v[i] = lw_expr(L, ca.pos[i])) == IR_NO_VALUE)
			ok = false;
	if (!ok)
		return IR_NO_VALUE;
	switch (sp->code) {
	case OP_RMSNORM:
	case OP_LAYERNORM:
		if (!opt_pos_float(L, ca.named[0], 1e-5, &fa[0]))
			return IR_NO_VALUE;
		break;
	case OP_ROPE: {
		static const char *const styles[] = { "half", "interleaved" };
		int style = 0;
		if (!heads_arg(L, ca.npos > 2 ? ca.pos[2] : NULL, ca.named[0], "heads", call, &ia[0]) ||
		    !opt_pos_float(L, ca.named[1], 10000.0, &fa[0]) || !opt_word(L, ca.named[2], styles, 2, &style))
			return IR_NO_VALUE;
		ia[1] = last(ir_vtype(L->f, v[0])) / ia[0];
		ia[2] = style;
		if (!rope_scaling(L, call, &ca, ia, fa))
			return IR_NO_VALUE;
		break;
	}
	case OP_GELU: {
		static const char *const approx[] = { "erf", "tanh" };
		int k = 0;
		if (!opt_word(L, ca.named[0], approx, 2, &k))
			return IR_NO_VALUE;
		ia[0] = k;
		break;
	}
	case OP_ROW:
		if (!lw_eval_int(L, ca.pos[1], "a row index", &ia[0]))
			return IR_NO_VALUE;
		break;
	case OP_SLICE:
		if (!lw_eval_int(L, ca.pos[1], "a slice start", &ia[0]) || !lw_eval_int(L, ca.pos[2], "a slice length", &ia[1]))
			return IR_NO_VALUE;
		break;
	case OP_ATTENTION:
		return lower_attention(L, call, &ca, v);
	default:
		break;
	}
	return lw_emit(L, sp->code, v, (uint32_t)nval, ia, fa, call->loc);
}

/* call: IDENT '(' [arg (',' arg)*] ')' -- an op, or a fn to inline */
static ValueId
lower_call(Lower *L, const Ast *call)
{
	for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++)
		if (strcmp(specs[i].name, call->name) == 0)
			return lower_op(L, call, &specs[i]);
	int c = ir_op_from_name(call->name);
	if (ir_op_is_unary_elemwise(c) && !ir_op_attrs[c].ia[0] && !ir_op_attrs[c].fa[0]) {
		OpSpec sp = { call->name, (Opcode)c, 1, 1, { 0 } };
		return lower_op(L, call, &sp);
	}
	MSym *s = lw_find(L, call->name);
	if (s && s->kind == SYM_FN)
		return lw_inline(L, call, s);
	if (s && s->kind == SYM_ENTRY)
		diag_error(L->d, call->loc, "entry '%s' cannot be called; make it a 'fn'", call->name);
	else if (strcmp(call->name, "kvcache") == 0)
		diag_error(L->d, call->loc, "'kvcache' declares state; it is not an op");
	else
		diag_error(L->d, call->loc, "unknown function '%s'", call->name);
	for (const Ast *a = call->kids; a; a = a->next) /* check the arguments anyway */
		if (a->kind != AST_NAMED && !lw_is_const(L, a))
			(void)lw_expr(L, a);
	return IR_NO_VALUE;
}

/* ---- expressions ---- */

/* A weight as a value: PARAM op of the plain weight or of name[index]. */
static ValueId
weight_ref(Lower *L, const Ast *e, MSym *s)
{
	int64_t ia[IR_NIA] = { 0 };
	if (s->bad)
		return IR_NO_VALUE;
	if (e->kind == AST_IDENT) {
		if (s->indexed) {
			diag_error(L->d, e->loc, "'%s' is indexed by layer: write '%s[l]'", e->name, e->name);
			return IR_NO_VALUE;
		}
		ia[0] = s->param;
		return lw_emit(L, OP_PARAM, NULL, 0, ia, NULL, e->loc);
	}
	if (!s->indexed) {
		diag_error(L->d, e->loc, "'%s' is not indexed", e->name);
		diag_note(L->d, s->loc, "'%s' is defined here", e->name);
		return IR_NO_VALUE;
	}
	int64_t idx;
	if (!lw_eval_int(L, e->a, "an index", &idx))
		return IR_NO_VALUE;
	if (idx < 0 || idx >= s->nslots || s->slots[idx] < 0) {
		diag_error(L->d, e->a->loc, "'%s[%lld]' is not defined", e->name, (long long)idx);
		diag_note(L->d, s->loc, "'%s' is defined here", e->name);
		return IR_NO_VALUE;
	}
	ia[0] = s->slots[idx];
	return lw_emit(L, OP_PARAM, NULL, 0, ia, NULL, e->loc);
}

static ValueId
lower_name(Lower *L, const Ast *e)
{
	LSym *ls = e->kind == AST_IDENT ? lw_local(L, e->name) : NULL;
	if (ls && !ls->is_int)
		return ls->v;
	if (ls) {
		diag_error(L->d, e->loc, "'%s' is an integer, expected a tensor", e->name);
		return IR_NO_VALUE;
	}
	if (e->kind == AST_INDEX && lw_local(L, e->name)) {
		diag_error(L->d, e->loc, "'%s' cannot be indexed", e->name);
		return IR_NO_VALUE;
	}
	MSym *s = lw_find(L, e->name);
	if (!s) {
		diag_error(L->d, e->loc, "unknown name '%s'", e->name);
		return IR_NO_VALUE;
	}
	switch (s->kind) {
	case SYM_WEIGHT:
		return weight_ref(L, e, s);
	case SYM_CONST:
		diag_error(L->d, e->loc, "'%s' is a constant, expected a tensor", e->name);
		break;
	case SYM_STATE:
		diag_error(L->d, e->loc, "'%s' is a kv cache; it can only be passed to 'attention'", e->name);
		break;
	case SYM_FN:
	case SYM_ENTRY:
		diag_error(L->d, e->loc, "'%s' is a %s; call it", e->name, s->kind == SYM_FN ? "fn" : "entry");
		break;
	}
	return IR_NO_VALUE;
}

/* expr: expr ('+' | '-' | '*' | '/') expr */
static ValueId
lower_binary(Lower *L, const Ast *e)
{
	char op = e->name[0];
	bool ca = lw_is_const(L, e->a), cb = lw_is_const(L, e->b);
	Num c;
	if ((op == '*' && (ca || cb)) || (op == '/' && cb && !ca)) {
		const Ast *ten = cb ? e->a : e->b, *num = cb ? e->b : e->a;
		ValueId x = lw_expr(L, ten);
		if (!lw_eval_num(L, num, &c))
			return IR_NO_VALUE;
		if (op == '/' && c.v == 0) {
			diag_error(L->d, num->loc, "division by zero");
			return IR_NO_VALUE;
		}
		float fa[IR_NFA] = { (float)(op == '/' ? 1.0 / c.v : c.v) };
		return lw_emit(L, OP_SCALE, &x, 1, NULL, fa, e->loc);
	}
	if (ca || cb) {
		const Ast *num = ca ? e->a : e->b;
		diag_error(L->d, num->loc, "'%c' needs two tensors, saw a constant", op);
		return IR_NO_VALUE;
	}
	ValueId v[2] = { lw_expr(L, e->a), lw_expr(L, e->b) };
	if (op == '/') {
		diag_error(L->d, e->loc, "tensor division is not supported");
		return IR_NO_VALUE;
	}
	return lw_emit(L, op == '+' ? OP_ADD : op == '-' ? OP_SUB : OP_MUL, v, 2, NULL, NULL, e->loc);
}

ValueId
lw_expr(Lower *L, const Ast *e)
{
	if (!e || L->stop)
		return IR_NO_VALUE;
	if (++L->depth > 400) {
		L->depth--;
		diag_error(L->d, e->loc, "expression nested too deeply");
		L->stop = true;
		return IR_NO_VALUE;
	}
	ValueId v = IR_NO_VALUE;
	switch (e->kind) {
	case AST_NUM:
		if (e->is_int) {
			v = const_i32(L, (int64_t)e->num, e->loc);
		} else {
			float fa[IR_NFA] = { (float)e->num };
			v = lw_emit(L, OP_CONST, NULL, 0, NULL, fa, e->loc);
		}
		break;
	case AST_IDENT:
	case AST_INDEX:
		v = lower_name(L, e);
		break;
	case AST_CALL:
		v = lower_call(L, e);
		break;
	case AST_BINARY:
		v = lower_binary(L, e);
		break;
	case AST_NEG: {
		ValueId x = lw_expr(L, e->a);
		float fa[IR_NFA] = { -1.0f };
		v = lw_emit(L, OP_SCALE, &x, 1, NULL, fa, e->loc);
		break;
	}
	case AST_NAMED:
		diag_error(L->d, e->loc, "named argument '%s' outside a call", e->name);
		break;
	default:
		diag_error(L->d, e->loc, "expected an expression");
		break;
	}
	L->depth--;
	return v;
}
