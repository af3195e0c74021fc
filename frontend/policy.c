/* policy.c - policy statements: word lists from the parser -> typed ir Policy, checked
 * once, here.
 *   1. each verb has a schema: the subjects it accepts and, per subject, the options
 *      (key, value kind, range, vocabulary from ir/policy.c); a statement is read
 *      left to right: verb, subject (and the subject's clause, e.g. `when cos(in,
 *      out) > T`), then `key value` options in any order, into an FeStmt;
 *   2. every value is range-checked against the model (layer indices, heads, fns)
 *      and reported at the value's location; calls such as quest(page 16, budget 64)
 *      are read as an option holding sub-options;
 *   3. a statement without errors becomes a typed PolicyStmt (to_typed: every option
 *      and call argument through ir_policy_set).
 * docs/language.md lists every statement and option. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

/* A statement as read, before it is typed: options keyed by their word; a call
 * (quest(...), block_topk(...), coverage ..., linear(...)) is an option keyed by its
 * name whose sub-options hold its arguments. */
typedef struct FeOpt FeOpt;
struct FeOpt {
	const char *key;
	PolicyVal val;
	Loc loc;
	bool call;                /* key is a call's name, its arguments in sub */
	FeOpt *sub; uint32_t nsub;
};
typedef struct FeStmt {
	const char *subject;
	FeOpt *opts; uint32_t nopts;
	Loc loc;
} FeStmt;

typedef enum VKind {
	V_KEEP,    /* fraction in (0,1], count >= 1, or a/b */
	V_INT,     /* integer >= min */
	V_POW2,    /* power of two */
	V_UNIT,    /* number in [0, 1] */
	V_NONNEG,  /* number >= 0 */
	V_WORD,    /* one of words */
	V_RANGE,   /* layer range a..b (or one layer) */
	V_LAYERS,  /* layer list a, b, ... */
	V_STRING,  /* "text" */
	V_PROTECT, /* first, last | none -> layer list */
	V_FN,      /* the name of a fn of the model (exit head) */
} VKind;

typedef struct OptSpec {
	const char *key;
	VKind kind;
	int64_t min;               /* V_INT */
	const IrVocab *words;      /* V_WORD: the choices */
} OptSpec;

typedef struct Ctx {
	Arena *ar;
	Diag *d;
	const FeModelInfo *mi;
	const Ast *stmt;
	bool ok;
} Ctx;

static const char *
word_text(const Ast *w, char *buf, size_t n)
{
	if (!w)
		return "end of statement";
	switch (w->op) {
	case 'n': snprintf(buf, n, "'%g'", w->num); break;
	case 's': snprintf(buf, n, "string \"%.40s\"", w->str); break;
	case 'c': snprintf(buf, n, "'%s(...)'", w->name); break;
	default: snprintf(buf, n, "'%s'", w->name); break;
	}
	return buf;
}

/* Location for "saw ...": the word, or the end of the statement. */
static Loc
wloc(Ctx *c, const Ast *w)
{
	if (w)
		return w->loc;
	Loc l = c->stmt->loc;
	for (const Ast *k = c->stmt->kids; k; k = k->next)
		if (k->loc.line == l.line)
			l.col = k->loc.end_col, l.end_col = 0;
	return l;
}

static void
expected(Ctx *c, const Ast *w, const char *what, const char *after)
{
	char buf[96];
	if (after)
		diag_error(c->d, wloc(c, w), "expected %s after '%s', saw %s", what, after, word_text(w, buf, sizeof buf));
	else
		diag_error(c->d, wloc(c, w), "expected %s, saw %s", what, word_text(w, buf, sizeof buf));
	c->ok = false;
}

static bool
is_word(const Ast *w, int op, const char *name)
{
	return w && w->op == op && (!name || (w->name && strcmp(w->name, name) == 0));
}

/* Checks a layer index against the model. */
static bool
layer_ok(Ctx *c, const Ast *w, int64_t l, int64_t hi_excl)
{
	if (l < 0 || (c->mi->nlayers > 0 && l >= hi_excl)) {
		diag_error(c->d, w->loc, "layer %lld is out of range: the model has %lld layers", (long long)l,
		           (long long)c->mi->nlayers);
		c->ok = false;
		return false;
	}
	return true;
}

static bool
int_word(Ctx *c, const Ast *w, const char *after, int64_t *out)
{
	if (!is_word(w, 'n', NULL) || !w->is_int) {
		expected(c, w, "an integer", after);
		return false;
	}
	*out = (int64_t)w->num;
	return true;
}

/* Reads a comma-separated list of layer indices into v (PV_LIST). */
static const Ast *
read_layers(Ctx *c, const Ast *w, const char *after, PolicyVal *v)
{
	v->kind = PV_LIST;
	for (;;) {
		int64_t l;
		if (!int_word(c, w, after, &l))
			return w;
		layer_ok(c, w, l, c->mi->nlayers);
		if (v->nints == sizeof v->ints / sizeof v->ints[0]) {
			diag_error(c->d, w->loc, "too many layers in a list (at most 64)");
			c->ok = false;
			return w->next;
		}
		for (uint32_t i = 0; i < v->nints; i++)
			if (v->ints[i] == l) {
				diag_error(c->d, w->loc, "layer %lld is listed twice", (long long)l);
				c->ok = false;
			}
		v->ints[v->nints++] = l;
		w = w->next;
		if (!is_word(w, ',', NULL))
			return w;
		w = w->next;
	}
}

/* Reads the value of option `sp` starting at word w; returns the next word. */
static const Ast *
read_value(Ctx *c, const OptSpec *sp, const Ast *w, PolicyVal *v)
{
	const char *k = sp->key;
	if (is_word(w, '-', NULL) && is_word(w->next, 'n', NULL) && w->next->loc.col == w->loc.end_col) {
		/* a negative number: one word from '-' and the number after it */
		Ast *neg = ast_word(c->ar, w->loc, 'n', NULL, -w->next->num, w->next->is_int);
		neg->loc.end_col = w->next->loc.end_col;
		neg->next = w->next->next;
		w = neg;
	}
	switch (sp->kind) {
	case V_KEEP:
		if (!is_word(w, 'n', NULL)) {
			expected(c, w, "a fraction or a count", k);
			return w;
		}
		if (is_word(w->next, '/', NULL)) {
			const Ast *den = w->next->next;
			if (!w->is_int || !is_word(den, 'n', NULL) || !den->is_int) {
				expected(c, den, "an integer fraction a/b", k);
				return den ? den->next : NULL;
			}
			if (den->num <= 0 || w->num <= 0 || w->num > den->num) {
				diag_error(c->d, w->loc, "keep %g/%g is outside (0, 1]", w->num, den->num);
				c->ok = false;
			}
			*v = (PolicyVal){ .kind = PV_FRAC, .num = den->num > 0 ? w->num / den->num : 0, .lo = (int64_t)w->num,
			                  .hi = (int64_t)den->num };
			return den->next;
		}
		*v = (PolicyVal){ .kind = PV_NUM, .num = w->num, .is_int = w->is_int };
		if (w->is_int && w->num < 1) {
			diag_error(c->d, w->loc, "keep count must be at least 1, saw %g", w->num);
			c->ok = false;
		} else if (!w->is_int && !(w->num > 0 && w->num <= 1)) {
			diag_error(c->d, w->loc, "keep %g is outside (0, 1]", w->num);
			c->ok = false;
		}
		return w->next;
	case V_INT:
	case V_POW2: {
		int64_t x;
		if (!int_word(c, w, k, &x))
			return w ? w->next : NULL;
		*v = (PolicyVal){ .kind = PV_NUM, .num = (double)x, .is_int = true };
		if (sp->kind == V_POW2 && (x <= 0 || (x & (x - 1)) != 0)) {
			diag_error(c->d, w->loc, "%s must be a power of two, saw %lld", k, (long long)x);
			c->ok = false;
		} else if (x < sp->min) {
			diag_error(c->d, w->loc, "%s must be at least %lld, saw %lld", k, (long long)sp->min, (long long)x);
			c->ok = false;
		}
		return w->next;
	}
	case V_UNIT:
	case V_NONNEG:
		if (!is_word(w, 'n', NULL)) {
			expected(c, w, "a number", k);
			return w ? w->next : NULL;
		}
		*v = (PolicyVal){ .kind = PV_NUM, .num = w->num, .is_int = w->is_int };
		if (sp->kind == V_UNIT && !(w->num >= 0 && w->num <= 1)) {
			diag_error(c->d, w->loc, "%s must be in [0, 1], saw %g", k, w->num);
			c->ok = false;
		} else if (sp->kind == V_NONNEG && !(w->num >= 0)) {
			diag_error(c->d, w->loc, "%s must be at least 0, saw %g", k, w->num);
			c->ok = false;
		}
		return w->next;
	case V_WORD:
		if (!is_word(w, 'i', NULL) || ir_vocab_find(sp->words, w->name) < 0) {
			char list[160], what[200];
			snprintf(what, sizeof what, "one of %s", ir_vocab_list(sp->words, ", ", list, sizeof list));
			expected(c, w, what, k);
			return w ? w->next : NULL;
		}
		*v = (PolicyVal){ .kind = PV_IDENT, .str = arena_strdup(c->ar, w->name) };
		return w->next;
	case V_RANGE: {
		int64_t lo, hi;
		if (!int_word(c, w, k, &lo))
			return w ? w->next : NULL;
		hi = lo + 1;
		const Ast *next = w->next;
		if (is_word(next, '.', NULL)) {
			if (!int_word(c, next->next, "..", &hi))
				return next->next;
			next = next->next->next;
			if (hi <= lo) {
				diag_error(c->d, w->loc, "empty layer range %lld..%lld", (long long)lo, (long long)hi);
				c->ok = false;
			}
		}
		*v = (PolicyVal){ .kind = PV_RANGE, .lo = lo, .hi = hi };
		if (layer_ok(c, w, lo, c->mi->nlayers) && hi > lo)
			layer_ok(c, w, hi, c->mi->nlayers + 1);
		return next;
	}
	case V_LAYERS:
		return read_layers(c, w, k, v);
	case V_STRING:
		if (!is_word(w, 's', NULL)) {
			expected(c, w, "a string", k);
			return w ? w->next : NULL;
		}
		*v = (PolicyVal){ .kind = PV_STRING, .str = arena_strdup(c->ar, w->str) };
		return w->next;
	case V_PROTECT:
		*v = (PolicyVal){ .kind = PV_LIST };
		if (is_word(w, 'i', "none"))
			return w->next;
		for (;;) {
			if (!is_word(w, 'i', "first") && !is_word(w, 'i', "last")) {
				expected(c, w, "'first', 'last' or 'none'", k);
				return w ? w->next : NULL;
			}
			int64_t l = strcmp(w->name, "first") == 0 ? 0 : c->mi->nlayers - 1;
			if (v->nints < 2 && (v->nints == 0 || v->ints[0] != l))
				v->ints[v->nints++] = l;
			w = w->next;
			if (!is_word(w, ',', NULL))
				return w;
			w = w->next;
		}
	case V_FN: {
		if (!is_word(w, 'i', NULL)) {
			expected(c, w, "the name of a fn", k);
			return w ? w->next : NULL;
		}
		const Ast *fn = NULL;
		for (const Ast *it = c->mi->model ? c->mi->model->kids : NULL; it; it = it->next)
			if (it->kind == AST_FN && strcmp(it->name, w->name) == 0)
				fn = it;
		if (!fn) {
			diag_error(c->d, w->loc, "unknown head '%s': the model has no fn of that name", w->name);
			c->ok = false;
		} else if (fn->nkids != 1 && !(fn->nkids == 2 && strcmp(fn->last->b->name, "int") == 0)) {
			diag_error(c->d, w->loc, "head '%s' must take the hidden state (and optionally the layer as an 'int'), "
			           "it takes %u arguments", w->name, fn->nkids);
			diag_note(c->d, fn->loc, "'%s' is defined here", w->name);
			c->ok = false;
		}
		*v = (PolicyVal){ .kind = PV_IDENT, .str = arena_strdup(c->ar, w->name) };
		return w->next;
	}
	}
	return w;
}

static const FeOpt *
find_opt(const FeOpt *opts, uint32_t n, const char *key)
{
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(opts[i].key, key) == 0)
			return &opts[i];
	return NULL;
}

static const FeOpt *
fe_policy_opt(const FeStmt *s, const char *key)
{
	return find_opt(s->opts, s->nopts, key);
}

/* Reads `key value` options from w to the end (or to a ')' for call bodies, where
 * commas may separate options) against `specs`.  Appends to *opts. */
static void
read_opts(Ctx *c, const Ast *w, const OptSpec *specs, const char *owner, bool commas, FeOpt **opts,
          uint32_t *nopts)
{
	while (w) {
		if (commas && is_word(w, ',', NULL) && *nopts > 0) {
			w = w->next;
			continue;
		}
		const OptSpec *sp = NULL;
		for (const OptSpec *s = specs; s && s->key; s++)
			if (is_word(w, 'i', s->key))
				sp = s;
		if (!sp) {
			char buf[96], keys[256] = "";
			for (const OptSpec *s = specs; s && s->key; s++)
				snprintf(keys + strlen(keys), sizeof keys - strlen(keys), "%s'%s'", keys[0] ? ", " : "", s->key);
			if (is_word(w, 'i', NULL))
				diag_error(c->d, w->loc, "unknown option '%s' for '%s' (expected %s)", w->name, owner,
				           keys[0] ? keys : "nothing");
			else
				diag_error(c->d, w->loc, "expected an option for '%s' (%s), saw %s", owner, keys[0] ? keys : "none",
				           word_text(w, buf, sizeof buf));
			c->ok = false;
			return;
		}
		const FeOpt *dup = find_opt(*opts, *nopts, sp->key);
		if (dup) {
			diag_error(c->d, w->loc, "option '%s' given twice", sp->key);
			diag_note(c->d, dup->loc, "first given here");
			c->ok = false;
		}
		FeOpt o = { .key = arena_strdup(c->ar, sp->key), .loc = w->loc };
		int before = c->d->nerrors;
		w = read_value(c, sp, w->next, &o.val);
		FeOpt *grown = arena_alloc(c->ar, (*nopts + 1) * sizeof *grown);
		if (*nopts)
			memcpy(grown, *opts, *nopts * sizeof *grown);
		grown[(*nopts)++] = o;
		*opts = grown;
		if (c->d->nerrors != before)
			return; /* the rest of the statement would only cascade */
	}
}

static FeOpt *
add_opt(Ctx *c, FeStmt *s, const char *key, PolicyVal v, Loc loc)
{
	FeOpt *grown = arena_alloc(c->ar, (s->nopts + 1) * sizeof *grown);
	if (s->nopts)
		memcpy(grown, s->opts, s->nopts * sizeof *grown);
	grown[s->nopts] = (FeOpt){ .key = arena_strdup(c->ar, key), .val = v, .loc = loc };
	s->opts = grown;
	return &grown[s->nopts++];
}

/* A call word name(key value, ...) -> option `name`, a call with sub-options. */
static FeOpt *
read_call(Ctx *c, FeStmt *s, const Ast *w, const OptSpec *specs)
{
	FeOpt *o = add_opt(c, s, w->name, (PolicyVal){ .kind = PV_IDENT, .str = arena_strdup(c->ar, w->name) }, w->loc);
	o->call = true;
	read_opts(c, w->kids, specs, w->name, true, &o->sub, &o->nsub);
	return o;
}

static double
sub_num(const FeOpt *o, const char *key, double dflt)
{
	const FeOpt *x = find_opt(o->sub, o->nsub, key);
	return x ? x->val.num : dflt;
}

static void
require_sub(Ctx *c, const Ast *w, const FeOpt *o, const char *key)
{
	if (!find_opt(o->sub, o->nsub, key)) {
		diag_error(c->d, w->loc, "'%s' needs '%s'", w->name, key);
		c->ok = false;
	}
}

/* ---- the verbs ---- */

static const OptSpec prune_opts[] = {
	{ "keep", V_KEEP, 0, NULL },
	{ "score", V_WORD, 0, &ir_score_vocab },
	{ "block", V_WORD, 0, &ir_block_vocab },
	{ "layers", V_RANGE, 0, NULL },
	{ "multiple", V_INT, 1, NULL },
	{ "protect", V_PROTECT, 0, NULL },
	{ "calibrate", V_STRING, 0, NULL },
	{ "tokens", V_INT, 1, NULL },
	{ 0 },
};
static const OptSpec ffn_skip_opts[] = {
	{ "warmup", V_INT, 0, NULL },
	{ "cold", V_LAYERS, 0, NULL },
	{ "layers", V_RANGE, 0, NULL },
	{ 0 },
};
static const OptSpec router_opts[] = {
	{ "buckets", V_INT, 1, NULL },
	{ "calibrate", V_STRING, 0, NULL },
	{ 0 },
};
static const OptSpec exit_opts[] = {
	{ "at", V_LAYERS, 0, NULL },
	{ "head", V_FN, 0, NULL },
	{ "measure", V_WORD, 0, &ir_measure_vocab },
	{ "threshold", V_NONNEG, 0, NULL },
	{ "decay", V_NONNEG, 0, NULL },
	{ "patience", V_INT, 1, NULL },
	{ "kv", V_WORD, 0, &ir_kv_vocab },
	{ 0 },
};
static const OptSpec decode_opts[] = {
	{ "sinks", V_INT, 0, NULL },
	{ "window", V_INT, 0, NULL },
	{ "dense_layers", V_LAYERS, 0, NULL },
	{ 0 },
};
static const OptSpec prefill_opts[] = {
	{ "dense_layers", V_LAYERS, 0, NULL },
	{ "min_tokens", V_INT, 1, NULL },
	{ 0 },
};
static const OptSpec quest_opts[] = { { "page", V_POW2, 1, NULL }, { "budget", V_INT, 1, NULL }, { 0 } };
static const OptSpec topk_opts[] = { { "block", V_POW2, 1, NULL }, { "topk", V_INT, 1, NULL }, { 0 } };
static const OptSpec coverage_opts[] = { { "gamma", V_UNIT, 0, NULL }, { "block", V_POW2, 1, NULL }, { 0 } };

/* 'prune' UNIT ('keep' K | 'score' S | 'block' B | 'layers' a..b | 'multiple' N | 'protect' P |
 *          'calibrate' "file" | 'tokens' N)*
 * UNIT: 'ffn_neuron' | 'head' | 'kv_group' | 'layer' | 'sublayer'; B ('attention' | 'ffn')
 * for 'sublayer' only */
static void
verb_prune(Ctx *c, FeStmt *s, const Ast *w)
{
	if (!is_word(w, 'i', NULL) || ir_vocab_find(&ir_unit_vocab, w->name) < 0) {
		expected(c, w, "a unit (ffn_neuron, head, kv_group, layer or sublayer)", "prune");
		return;
	}
	s->subject = arena_strdup(c->ar, w->name);
	int before = c->d->nerrors;
	read_opts(c, w->next, prune_opts, "prune", false, &s->opts, &s->nopts);
	if (c->d->nerrors != before)
		return;
	const FeOpt *keep = fe_policy_opt(s, "keep"), *score = fe_policy_opt(s, "score");
	if (!keep) {
		diag_error(c->d, s->loc, "'prune %s' needs 'keep'", s->subject);
		c->ok = false;
		return;
	}
	bool layer = strcmp(s->subject, "layer") == 0, sub = strcmp(s->subject, "sublayer") == 0;
	const FeOpt *block = fe_policy_opt(s, "block");
	if (block && !sub) {
		diag_error(c->d, block->loc, "option 'block' applies to 'sublayer' only");
		c->ok = false;
	}
	/* a layer holds two blocks: at most 2 * layers, or layers of one kind */
	int64_t nblocks = c->mi->nlayers * (sub && !block ? 2 : 1);
	if (sub && keep->val.kind == PV_NUM && keep->val.is_int && c->mi->nlayers > 0 && keep->val.num > nblocks) {
		diag_error(c->d, keep->loc, "keep %g blocks, but the model has %lld", keep->val.num, (long long)nblocks);
		c->ok = false;
	}
	if (layer && keep->val.kind == PV_NUM && keep->val.is_int && c->mi->nlayers > 0 && keep->val.num > c->mi->nlayers) {
		diag_error(c->d, keep->loc, "keep %g layers, but the model has %lld", keep->val.num, (long long)c->mi->nlayers);
		c->ok = false;
	}
	if (score) {
		const char *sc = score->val.str;
		int e = ir_vocab_find(&ir_score_vocab, sc);
		bool layer_score = e == PS_ANGULAR || e == PS_BI;
		if (layer_score && !layer && !sub) {
			diag_error(c->d, score->loc, "score '%s' ranks layers; it does not apply to '%s'", sc, s->subject);
			c->ok = false;
		}
		if (e == PS_ACT && (layer || sub)) {
			diag_error(c->d, score->loc, "score 'act' ranks units inside a layer; it does not apply to '%s'",
			           s->subject);
			c->ok = false;
		}
		if (e == PS_MAW && strcmp(s->subject, "ffn_neuron") != 0) {
			diag_error(c->d, score->loc, "score 'maw' applies to 'ffn_neuron' only");
			c->ok = false;
		}
	}
}

/* 'drop' 'layers' (a..b | a, b, ...) */
static void
verb_drop(Ctx *c, FeStmt *s, const Ast *w)
{
	if (!is_word(w, 'i', "layers")) {
		expected(c, w, "'layers'", "drop");
		return;
	}
	s->subject = "layers";
	PolicyVal v = { 0 };
	const Ast *first = w->next, *rest;
	if (first && is_word(first->next, '.', NULL)) {
		OptSpec sp = { "layers", V_RANGE, 0, NULL };
		rest = read_value(c, &sp, first, &v);
	} else {
		rest = read_layers(c, first, "layers", &v);
	}
	add_opt(c, s, "layers", v, w->loc);
	if (c->ok && rest)
		expected(c, rest, "';'", NULL);
	int64_t n = v.kind == PV_RANGE ? v.hi - v.lo : v.nints;
	if (c->ok && c->mi->nlayers > 0 && n >= c->mi->nlayers) {
		diag_error(c->d, w->loc, "cannot drop every layer of the model");
		c->ok = false;
	}
}

/* True when statement s has no option key yet; else reports w as its second. */
static bool
first_time(Ctx *c, const FeStmt *s, const Ast *w, const char *key)
{
	if (!fe_policy_opt(s, key))
		return true;
	diag_error(c->d, w->loc, "option '%s' given twice", key);
	c->ok = false;
	return false;
}

/* 'quantize' 'weights' (q8 | q4 | bf16 | f32) ('group' G | 'activations' (int8 | f32)
 *   | 'layers' a..b | 'except' NAME, ...)*: the storage format of the matrices
 * linears and embeds read (pass quantize), and the activations of q8/q4 linears.
 * Read into options format (word), group (int), activations (word), layers (range)
 * and one 'except' string per name; the names are checked by the pass, which
 * knows the params. */
static void
verb_quantize(Ctx *c, FeStmt *s, const Ast *w)
{
	if (!is_word(w, 'i', "weights")) {
		expected(c, w, "'weights'", "quantize");
		return;
	}
	s->subject = "weights";
	w = w->next;
	if (!is_word(w, 'i', NULL) || ir_qformat_from_name(w->name) < 0) {
		expected(c, w, "a format (q8, q4, bf16, f32)", "weights");
		return;
	}
	add_opt(c, s, "format", (PolicyVal){ .kind = PV_IDENT, .str = arena_strdup(c->ar, w->name) }, w->loc);
	bool grouped = strcmp(w->name, "q8") == 0 || strcmp(w->name, "q4") == 0;
	const Ast *fw = w;
	for (w = w->next; w && c->ok;) {
		if (is_word(w, 'i', "group") || is_word(w, 'i', "layers")) {
			bool group = strcmp(w->name, "group") == 0;
			if (!first_time(c, s, w, w->name))
				return;
			OptSpec sp = { w->name, group ? V_INT : V_RANGE, 8, NULL };
			PolicyVal v = { 0 };
			const Ast *at = w;
			w = read_value(c, &sp, w->next, &v);
			if (group && c->ok && ((int64_t)v.num % 8 || v.num > 4096)) {
				diag_error(c->d, at->next->loc, "expected a group that is a multiple of 8 in [8, 4096], saw %g",
				           v.num);
				c->ok = false;
			}
			if (group && !grouped) {
				diag_error(c->d, at->loc, "format '%s' has no groups", fw->name);
				c->ok = false;
			}
			add_opt(c, s, at->name, v, at->loc);
		} else if (is_word(w, 'i', "activations")) {
			if (!first_time(c, s, w, "activations"))
				return;
			const Ast *at = w;
			w = w->next;
			if (!is_word(w, 'i', NULL) || ir_actformat_from_name(w->name) < 0) {
				expected(c, w, "'int8' or 'f32'", "activations");
				return;
			}
			if (strcmp(w->name, "int8") == 0 && !grouped) {
				diag_error(c->d, w->loc, "format '%s' has f32 activations only, saw 'int8'", fw->name);
				c->ok = false;
				return;
			}
			add_opt(c, s, "activations", (PolicyVal){ .kind = PV_IDENT, .str = arena_strdup(c->ar, w->name) }, at->loc);
			w = w->next;
		} else if (is_word(w, 'i', "except")) {
			if (!first_time(c, s, w, "except"))
				return;
			const Ast *at = w;
			PolicyVal names = { .kind = PV_NAMES };
			w = w->next;
			for (;;) {
				if (!is_word(w, 'i', NULL)) {
					expected(c, w, "a weight name", "except");
					return;
				}
				if (names.nstrs == IR_POLICY_MAX_LIST) {
					diag_error(c->d, w->loc, "too many names after 'except' (at most %d)", IR_POLICY_MAX_LIST);
					c->ok = false;
					return;
				}
				names.strs[names.nstrs++] = arena_strdup(c->ar, w->name);
				w = w->next;
				if (!is_word(w, ',', NULL))
					break;
				w = w->next;
			}
			add_opt(c, s, "except", names, at->loc);
		} else {
			expected(c, w, "'group', 'activations', 'layers', 'except' or ';'", NULL);
			return;
		}
	}
	if (grouped && !fe_policy_opt(s, "group"))
		add_opt(c, s, "group", (PolicyVal){ .kind = PV_NUM, .num = 32, .is_int = true }, fw->loc);
}

/* 'skip' ( 'schedule' linear(n_max, n_min, ctx)
 *        | 'ffn' 'when' cos(in, out) '>' T ('warmup' N | 'cold' L, ... | 'layers' a..b)*
 *        | 'layers' 'from' 'router' ('buckets' N | 'calibrate' "file")* ) */
static void
verb_skip(Ctx *c, FeStmt *s, const Ast *w)
{
	if (is_word(w, 'i', "schedule")) {
		s->subject = "schedule";
		const Ast *call = w->next;
		if (!is_word(call, 'c', "linear")) {
			expected(c, call, "'linear(n_max, n_min, ctx)'", "schedule");
			return;
		}
		/* positional: n_max, n_min, ctx, each an option of the statement */
		static const char *const keys[3] = { "n_max", "n_min", "ctx" };
		int64_t arg[3];
		Loc at[3];
		const Ast *a = call->kids;
		for (int i = 0; i < 3; i++) {
			if (!int_word(c, a, i ? "," : "linear(", &arg[i]))
				return;
			at[i] = a->loc;
			a = a->next;
			if (i < 2) {
				if (!is_word(a, ',', NULL)) {
					expected(c, a, "','", NULL);
					return;
				}
				a = a->next;
			}
		}
		if (a) {
			expected(c, a, "')' after 3 arguments", NULL);
			return;
		}
		int64_t nmax = arg[0], nmin = arg[1], ctx = arg[2];
		if (nmin < 1 || nmin > nmax) {
			diag_error(c->d, at[1], "n_min must be in 1..n_max (%lld), saw %lld", (long long)nmax, (long long)nmin);
			c->ok = false;
		}
		if (c->mi->nlayers > 0 && nmax > c->mi->nlayers) {
			diag_error(c->d, at[0], "n_max %lld is more than the model's %lld layers", (long long)nmax,
			           (long long)c->mi->nlayers);
			c->ok = false;
		}
		if (ctx < 1) {
			diag_error(c->d, at[2], "ctx must be at least 1, saw %lld", (long long)ctx);
			c->ok = false;
		}
		for (int i = 0; i < 3; i++)
			add_opt(c, s, keys[i], (PolicyVal){ .kind = PV_NUM, .num = (double)arg[i], .is_int = true }, at[i]);
		if (call->next)
			expected(c, call->next, "';'", NULL);
	} else if (is_word(w, 'i', "ffn")) {
		s->subject = "ffn";
		/* when cos(in, out) > T */
		const Ast *x = w->next;
		if (!is_word(x, 'i', "when")) {
			expected(c, x, "'when cos(in, out) > T'", "ffn");
			return;
		}
		x = x->next;
		const Ast *k = x ? x->kids : NULL;
		if (!is_word(x, 'c', "cos") || !is_word(k, 'i', "in") || !is_word(k->next, ',', NULL) ||
		    !is_word(k->next->next, 'i', "out") || k->next->next->next) {
			expected(c, x, "'cos(in, out)'", "when");
			return;
		}
		x = x->next;
		if (!is_word(x, '>', NULL)) {
			expected(c, x, "'>'", "cos(in, out)");
			return;
		}
		OptSpec th = { "threshold", V_UNIT, 0, NULL };
		PolicyVal v = { 0 };
		const Ast *t = x->next;
		x = read_value(c, &th, t, &v);
		if (!c->ok)
			return;
		add_opt(c, s, "threshold", v, t->loc);
		read_opts(c, x, ffn_skip_opts, "skip ffn", false, &s->opts, &s->nopts);
	} else if (is_word(w, 'i', "layers")) {
		s->subject = "layers";
		const Ast *x = w->next;
		if (!is_word(x, 'i', "from") || !is_word(x->next, 'i', "router")) {
			expected(c, x ? x->next && is_word(x, 'i', "from") ? x->next : x : NULL, "'from router'", "layers");
			return;
		}
		add_opt(c, s, "from", (PolicyVal){ .kind = PV_IDENT, .str = "router" }, x->next->loc);
		read_opts(c, x->next->next, router_opts, "skip layers", false, &s->opts, &s->nopts);
	} else {
		expected(c, w, "'schedule', 'ffn' or 'layers'", "skip");
	}
}

bool
fe_policy_names_head(const Policy *p, const char *fn)
{
	for (uint32_t i = 0; p && i < p->nstmts; i++)
		if (p->stmts[i].verb == POL_EXIT && p->stmts[i].exit.head && strcmp(p->stmts[i].exit.head, fn) == 0)
			return true;
	return false;
}

/* 'exit' ('at' L, ... | 'head' FN | 'measure' M | 'threshold' T | 'decay' TAU |
 *         'patience' N | 'kv' propagate|none)* */
static void
verb_exit(Ctx *c, FeStmt *s, const Ast *w)
{
	int before = c->d->nerrors;
	read_opts(c, w, exit_opts, "exit", false, &s->opts, &s->nopts);
	if (c->d->nerrors != before)
		return;
	const FeOpt *at = fe_policy_opt(s, "at"), *th = fe_policy_opt(s, "threshold");
	const FeOpt *m = fe_policy_opt(s, "measure");
	if (!at) {
		diag_error(c->d, s->loc, "'exit' needs its sites: 'at L1, L2, ...'");
		c->ok = false;
		return;
	}
	if (!fe_policy_opt(s, "head")) {
		diag_error(c->d, at->loc, "exit site %lld has no head: add 'head NAME' naming a fn", (long long)at->val.ints[0]);
		c->ok = false;
	}
	bool entropy = m && strcmp(m->val.str, "entropy") == 0;
	if (th && !entropy && th->val.num > 1) {
		diag_error(c->d, th->loc, "threshold must be in [0, 1], saw %g", th->val.num);
		c->ok = false;
	}
}

/* 'attend' ( 'decode' [quest(page P, budget B)] ('sinks' S | 'window' W | 'dense_layers' L, ...)*
 *          | 'prefill' (block_topk(block B, topk K) | 'coverage' 'gamma' G ['block' B])
 *            ('dense_layers' L, ... | 'min_tokens' N)* ) */
static void
verb_attend(Ctx *c, FeStmt *s, const Ast *w)
{
	if (is_word(w, 'i', "decode")) {
		s->subject = "decode";
		const Ast *x = w->next;
		if (is_word(x, 'c', "quest")) {
			int before = c->d->nerrors;
			FeOpt *q = read_call(c, s, x, quest_opts);
			if (c->d->nerrors == before) {
				require_sub(c, x, q, "page");
				require_sub(c, x, q, "budget");
				double page = sub_num(q, "page", 1), budget = sub_num(q, "budget", 1e18);
				if (c->ok && budget < page) {
					diag_error(c->d, find_opt(q->sub, q->nsub, "budget")->loc,
					           "budget %g is smaller than one page of %g", budget, page);
					c->ok = false;
				}
			}
			x = x->next;
		}
		if (c->ok)
			read_opts(c, x, decode_opts, "attend decode", false, &s->opts, &s->nopts);
		if (c->ok && s->nopts == 0) {
			diag_error(c->d, w->loc, "'attend decode' needs quest(...), sinks or window");
			c->ok = false;
		}
	} else if (is_word(w, 'i', "prefill")) {
		s->subject = "prefill";
		const Ast *x = w->next;
		if (is_word(x, 'c', "block_topk")) {
			FeOpt *o = read_call(c, s, x, topk_opts);
			if (c->ok) {
				require_sub(c, x, o, "block");
				require_sub(c, x, o, "topk");
			}
			x = x->next;
		} else if (is_word(x, 'i', "coverage")) {
			/* coverage gamma G [block B] -> call-like option "coverage" */
			FeOpt v = { .call = true };
			const Ast *y = x->next;
			while (c->ok && (is_word(y, 'i', "gamma") || is_word(y, 'i', "block"))) {
				const OptSpec *sp = is_word(y, 'i', "gamma") ? &coverage_opts[0] : &coverage_opts[1];
				FeOpt o = { .key = sp->key, .loc = y->loc };
				if (find_opt(v.sub, v.nsub, sp->key)) {
					diag_error(c->d, y->loc, "option '%s' given twice", sp->key);
					c->ok = false;
				}
				y = read_value(c, sp, y->next, &o.val);
				FeOpt *g = arena_alloc(c->ar, (v.nsub + 1) * sizeof *g);
				if (v.nsub)
					memcpy(g, v.sub, v.nsub * sizeof *g);
				g[v.nsub++] = o;
				v.sub = g;
			}
			if (c->ok && !find_opt(v.sub, v.nsub, "gamma")) {
				expected(c, x->next, "'gamma G'", "coverage");
				return;
			}
			const FeOpt *g = find_opt(v.sub, v.nsub, "gamma");
			if (c->ok && g->val.num <= 0) {
				diag_error(c->d, g->loc, "gamma must be in (0, 1], saw %g", g->val.num);
				c->ok = false;
			}
			FeOpt *cov = add_opt(c, s, "coverage", (PolicyVal){ .kind = PV_IDENT, .str = "coverage" }, x->loc);
			cov->call = true;
			cov->sub = v.sub;
			cov->nsub = v.nsub;
			x = y;
		} else {
			expected(c, x, "'block_topk(...)' or 'coverage gamma G'", "prefill");
			return;
		}
		if (c->ok)
			read_opts(c, x, prefill_opts, "attend prefill", false, &s->opts, &s->nopts);
	} else {
		expected(c, w, "'decode' or 'prefill'", "attend");
	}
}

/* Sets one checked option of the typed statement (a failure is a bug here: every
 * value was checked against the same vocabularies when it was read). */
static void
set_typed(Ctx *c, PolicyStmt *t, const char *key, const PolicyVal *v, Loc loc)
{
	char err[256];
	int k = ir_policy_key(t, key);
	if (k < 0 || !ir_policy_set(t, (PolicyKey)k, v, loc, err, sizeof err)) {
		diag_error(c->d, loc, "internal error: policy option '%s': %s", key, k < 0 ? "no such option" : err);
		c->ok = false;
	}
}

/* The statement as read -> the typed statement (ir/ir.h): subject from its
 * vocabulary (`skip layers from router` is the subject router), every option by its
 * word, a call's arguments as options of their own (a prefill call also sets the
 * method). */
static void
to_typed(Ctx *c, PolicyVerb verb, const FeStmt *fs, PolicyStmt *t)
{
	const char *subject = fs->subject;
	if (verb == POL_SKIP && subject && strcmp(subject, "layers") == 0)
		subject = "router";
	if (!ir_policy_init(t, verb, subject, fs->loc)) {
		diag_error(c->d, fs->loc, "internal error: policy subject '%s'", subject ? subject : "");
		c->ok = false;
		return;
	}
	for (uint32_t i = 0; i < fs->nopts; i++) {
		const FeOpt *o = &fs->opts[i];
		if (verb == POL_SKIP && strcmp(o->key, "from") == 0)
			continue;
		if (!o->call) {
			set_typed(c, t, o->key, &o->val, o->loc);
			continue;
		}
		if (verb == POL_ATTEND && t->attend.kind == AK_PREFILL)
			set_typed(c, t, "method", &o->val, o->loc);
		for (uint32_t j = 0; j < o->nsub; j++)
			set_typed(c, t, o->sub[j].key, &o->sub[j].val, o->sub[j].loc);
	}
}

Policy *
fe_policy_build(Arena *ar, const Ast *pol, const FeModelInfo *mi, Diag *d)
{
	Policy *p = arena_alloc(ar, sizeof *p);
	p->name = arena_strdup(ar, pol->name);
	p->loc = pol->loc;
	p->stmts = arena_alloc(ar, (pol->nkids + 1) * sizeof *p->stmts);
	bool ok = true;
	for (const Ast *st = pol->kids; st && !diag_too_many(d); st = st->next) {
		Ctx c = { .ar = ar, .d = d, .mi = mi, .stmt = st, .ok = true };
		FeStmt s = { .loc = st->loc };
		const Ast *w = st->kids;
		int verb = ir_vocab_find(&ir_verb_vocab, st->name);
		switch (verb) {
		case POL_PRUNE: verb_prune(&c, &s, w); break;
		case POL_DROP: verb_drop(&c, &s, w); break;
		case POL_SKIP: verb_skip(&c, &s, w); break;
		case POL_EXIT: verb_exit(&c, &s, w); break;
		case POL_ATTEND: verb_attend(&c, &s, w); break;
		case POL_QUANTIZE: verb_quantize(&c, &s, w); break;
		default:
			diag_error(d, st->loc, "unknown policy statement '%s' (expected prune, drop, skip, exit, attend or quantize)",
			           st->name);
			c.ok = false;
		}
		if (c.ok)
			to_typed(&c, (PolicyVerb)verb, &s, &p->stmts[p->nstmts++]);
		ok &= c.ok;
	}
	return ok ? p : NULL;
}
