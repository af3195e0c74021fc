/* policy.c - typed policy statements: the vocabularies (word <-> enum, one table per
 * enum, shared by the front end, the printer, the .eir parser and the passes) and
 * the option table generated from policy.def, with the one function that types a
 * written value (ir_policy_set) and its inverse (ir_policy_get).
 *   - set: find the row's field (offset into PolicyStmt), check the value's kind
 *     against the row's kind (a word against the row's vocabulary), store it, mark
 *     the option given and keep its location;
 *   - get: build the written form back from the field, so that printing `get` and
 *     reading it with `set` gives the same statement (the .eir round trip). */
#include "ir/ir.h"

#include <string.h>

#define VOCAB(id, ...)                                         \
	static const char *const id##_names[] = { __VA_ARGS__ }; \
	const IrVocab id = { id##_names, (int)(sizeof id##_names / sizeof id##_names[0]) }

/* ORDER: each table follows its enum (ir.h). */
VOCAB(ir_verb_vocab, "prune", "drop", "skip", "exit", "attend", "quantize");
VOCAB(ir_unit_vocab, "ffn_neuron", "head", "kv_group", "layer", "sublayer");
VOCAB(ir_score_vocab, "l1", "l2", "maw", "angular", "bi", "act");
VOCAB(ir_block_vocab, "attention", "ffn");
VOCAB(ir_measure_vocab, "margin", "maxprob", "entropy", "state_cos");
VOCAB(ir_kv_vocab, "propagate", "none");
VOCAB(ir_skip_vocab, "schedule", "ffn", "router");
VOCAB(ir_attend_vocab, "decode", "prefill");
VOCAB(ir_method_vocab, "block_topk", "coverage");
VOCAB(ir_qformat_vocab, "f32", "bf16", "q8", "q4"); /* ORDER: QFormat */
VOCAB(ir_actformat_vocab, "f32", "int8");         /* ORDER: ActFormat */

_Static_assert(sizeof(PruneScore) == sizeof(int) && sizeof(ExitKv) == sizeof(int), "enums are stored as int");

const PolicyKeyInfo ir_policy_keys[PK_COUNT] = {
#define POLICY_KEY(id, word, verb, subject, kind, field, vocab) \
	{ word, verb, subject, kind, offsetof(PolicyStmt, field), vocab },
#include "ir/policy.def"
#undef POLICY_KEY
};

const char *
ir_vocab_name(const IrVocab *v, int e)
{
	return e >= 0 && e < v->n ? v->names[e] : "?";
}

int
ir_vocab_find(const IrVocab *v, const char *s)
{
	for (int i = 0; s && i < v->n; i++)
		if (strcmp(s, v->names[i]) == 0)
			return i;
	return -1;
}

char *
ir_vocab_list(const IrVocab *v, const char *last, char *buf, size_t n)
{
	size_t len = 0;
	buf[0] = '\0';
	for (int i = 0; i < v->n && len < n; i++)
		len += (size_t)snprintf(buf + len, n - len, "%s'%s'", i == 0 ? "" : i == v->n - 1 ? last : ", ",
		                        v->names[i]);
	return buf;
}

/* The vocabulary of a verb's subjects (NULL for drop and exit). */
static const IrVocab *
subject_vocab(PolicyVerb v)
{
	switch (v) {
	case POL_PRUNE: return &ir_unit_vocab;
	case POL_SKIP: return &ir_skip_vocab;
	case POL_ATTEND: return &ir_attend_vocab;
	case POL_DROP:
	case POL_EXIT:
	case POL_QUANTIZE:
	case POL_VERB_COUNT: break;
	}
	return NULL;
}

int
ir_policy_subject(const PolicyStmt *s)
{
	switch (s->verb) {
	case POL_PRUNE: return (int)s->prune.unit;
	case POL_SKIP: return (int)s->skip.kind;
	case POL_ATTEND: return (int)s->attend.kind;
	case POL_DROP:
	case POL_EXIT:
	case POL_QUANTIZE:
	case POL_VERB_COUNT: break;
	}
	return -1;
}

const char *
ir_policy_subject_name(const PolicyStmt *s)
{
	if (s->verb == POL_DROP)
		return "layers";
	if (s->verb == POL_QUANTIZE)
		return "weights";
	const IrVocab *v = subject_vocab(s->verb);
	return v ? ir_vocab_name(v, ir_policy_subject(s)) : NULL;
}

bool
ir_policy_init(PolicyStmt *s, PolicyVerb v, const char *subject, Loc loc)
{
	memset(s, 0, sizeof *s);
	s->verb = v;
	s->loc = loc;
	const IrVocab *sv = subject_vocab(v);
	int k = sv ? ir_vocab_find(sv, subject) : 0;
	switch (v) {
	case POL_PRUNE: s->prune.unit = (PruneUnit)k; break;
	case POL_SKIP: s->skip.kind = (SkipKind)k; break;
	case POL_ATTEND: s->attend.kind = (AttendKind)k; break;
	case POL_DROP: return subject && strcmp(subject, "layers") == 0;
	case POL_EXIT: return subject == NULL;
	case POL_QUANTIZE: return subject && strcmp(subject, "weights") == 0;
	case POL_VERB_COUNT: return false;
	}
	return k >= 0;
}

int
ir_policy_key(const PolicyStmt *s, const char *word)
{
	int subj = ir_policy_subject(s);
	for (int k = 0; word && k < PK_COUNT; k++) {
		const PolicyKeyInfo *ki = &ir_policy_keys[k];
		if (ki->verb == s->verb && (ki->subject < 0 || ki->subject == subj) && strcmp(ki->word, word) == 0)
			return k;
	}
	return -1;
}

static bool
fail(char *err, size_t nerr, const PolicyKeyInfo *ki, const char *what)
{
	snprintf(err, nerr, "expected %s for '%s'", what, ki->word);
	return false;
}

/* A layer set from a written range or list. */
static bool
to_layers(const PolicyVal *v, PolicyLayers *out, bool range_ok, bool list_ok)
{
	memset(out, 0, sizeof *out);
	if (v->kind == PV_RANGE && range_ok && v->lo >= INT32_MIN && v->hi <= INT32_MAX) {
		out->range = true;
		out->lo = (int32_t)v->lo;
		out->hi = (int32_t)v->hi;
		return true;
	}
	if (v->kind != PV_LIST || !list_ok || v->nints > IR_POLICY_MAX_LIST)
		return false;
	for (uint32_t i = 0; i < v->nints; i++) {
		if (v->ints[i] < INT32_MIN || v->ints[i] > INT32_MAX)
			return false;
		out->list[i] = (int32_t)v->ints[i];
	}
	out->n = v->nints;
	return true;
}

bool
ir_policy_set(PolicyStmt *s, PolicyKey k, const PolicyVal *v, Loc loc, char *err, size_t nerr)
{
	if ((int)k < 0 || k >= PK_COUNT) {
		snprintf(err, nerr, "unknown option");
		return false;
	}
	const PolicyKeyInfo *ki = &ir_policy_keys[k];
	int subj = ir_policy_subject(s);
	if (ki->verb != s->verb || (ki->subject >= 0 && ki->subject != subj)) {
		snprintf(err, nerr, "option '%s' does not apply to '%s%s%s'", ki->word, ir_vocab_name(&ir_verb_vocab, s->verb),
		         ir_policy_subject_name(s) ? " " : "", ir_policy_subject_name(s) ? ir_policy_subject_name(s) : "");
		return false;
	}
	void *f = (char *)s + ki->offset;
	switch (ki->kind) {
	case PKK_KEEP: {
		PolicyKeep keep = { 0 };
		if (v->kind == PV_FRAC && v->hi > 0)
			keep = (PolicyKeep){ .value = (double)v->lo / (double)v->hi, .num = v->lo, .den = v->hi };
		else if (v->kind == PV_NUM)
			keep = (PolicyKeep){ .value = v->num, .count = v->is_int };
		else
			return fail(err, nerr, ki, "a fraction, a count or a/b");
		memcpy(f, &keep, sizeof keep);
		break;
	}
	case PKK_INT: {
		if (v->kind != PV_NUM || !v->is_int)
			return fail(err, nerr, ki, "an integer");
		int64_t x = (int64_t)v->num;
		memcpy(f, &x, sizeof x);
		break;
	}
	case PKK_NUM:
		if (v->kind != PV_NUM)
			return fail(err, nerr, ki, "a number");
		memcpy(f, &v->num, sizeof v->num);
		break;
	case PKK_RANGE:
	case PKK_LIST:
	case PKK_LAYERS: {
		PolicyLayers ls;
		if (!to_layers(v, &ls, ki->kind != PKK_LIST, ki->kind != PKK_RANGE))
			return fail(err, nerr, ki, ki->kind == PKK_RANGE ? "a layer range a..b"
			                           : ki->kind == PKK_LIST ? "a layer list [a, b, ...]"
			                                                  : "a layer range a..b or a list [a, b, ...]");
		memcpy(f, &ls, sizeof ls);
		break;
	}
	case PKK_NAMES: {
		if (v->kind != PV_NAMES || v->nstrs == 0 || v->nstrs > IR_POLICY_MAX_LIST)
			return fail(err, nerr, ki, "a list of names [\"a\", \"b\", ...]");
		PolicyNames ns = { .n = v->nstrs };
		for (uint32_t i = 0; i < v->nstrs; i++) {
			if (!v->strs[i] || !*v->strs[i])
				return fail(err, nerr, ki, "a list of non-empty names");
			ns.names[i] = v->strs[i];
		}
		memcpy(f, &ns, sizeof ns);
		break;
	}
	case PKK_STRING:
	case PKK_NAME:
		if (v->kind != (ki->kind == PKK_STRING ? PV_STRING : PV_IDENT) || !v->str)
			return fail(err, nerr, ki, ki->kind == PKK_STRING ? "a string" : "a name");
		memcpy(f, &v->str, sizeof v->str);
		break;
	case PKK_WORD: {
		int e = v->kind == PV_IDENT ? ir_vocab_find(ki->vocab, v->str) : -1;
		if (e < 0) {
			char list[160], what[200];
			snprintf(what, sizeof what, "one of %s", ir_vocab_list(ki->vocab, " or ", list, sizeof list));
			return fail(err, nerr, ki, what);
		}
		memcpy(f, &e, sizeof e);
		break;
	}
	}
	s->given |= (uint64_t)1 << k;
	s->key_loc[k] = loc;
	return true;
}

PolicyVal
ir_policy_get(const PolicyStmt *s, PolicyKey k)
{
	PolicyVal v = { 0 };
	const PolicyKeyInfo *ki = &ir_policy_keys[k];
	const void *f = (const char *)s + ki->offset;
	switch (ki->kind) {
	case PKK_KEEP: {
		PolicyKeep keep;
		memcpy(&keep, f, sizeof keep);
		if (keep.den > 0)
			v = (PolicyVal){ .kind = PV_FRAC, .num = keep.value, .lo = keep.num, .hi = keep.den };
		else
			v = (PolicyVal){ .kind = PV_NUM, .num = keep.value, .is_int = keep.count };
		break;
	}
	case PKK_INT: {
		int64_t x;
		memcpy(&x, f, sizeof x);
		v = (PolicyVal){ .kind = PV_NUM, .num = (double)x, .is_int = true };
		break;
	}
	case PKK_NUM:
		v.kind = PV_NUM;
		memcpy(&v.num, f, sizeof v.num);
		break;
	case PKK_RANGE:
	case PKK_LIST:
	case PKK_LAYERS: {
		const PolicyLayers *ls = f;
		if (ls->range) {
			v = (PolicyVal){ .kind = PV_RANGE, .lo = ls->lo, .hi = ls->hi };
		} else {
			v.kind = PV_LIST;
			v.nints = ls->n;
			for (uint32_t i = 0; i < ls->n; i++)
				v.ints[i] = ls->list[i];
		}
		break;
	}
	case PKK_NAMES: {
		const PolicyNames *ns = f;
		v.kind = PV_NAMES;
		v.nstrs = ns->n;
		for (uint32_t i = 0; i < ns->n; i++)
			v.strs[i] = ns->names[i];
		break;
	}
	case PKK_STRING:
	case PKK_NAME:
		v.kind = ki->kind == PKK_STRING ? PV_STRING : PV_IDENT;
		memcpy(&v.str, f, sizeof v.str);
		break;
	case PKK_WORD: {
		int e;
		memcpy(&e, f, sizeof e);
		v = (PolicyVal){ .kind = PV_IDENT, .str = ir_vocab_name(ki->vocab, e) };
		break;
	}
	}
	return v;
}

const char *
ir_policy_missing(const PolicyStmt *s)
{
	static const PolicyKey need[] = { PK_PRUNE_KEEP, PK_DROP_LAYERS, PK_SKIP_N_MAX, PK_SKIP_N_MIN, PK_SKIP_CTX,
		                          PK_SKIP_THRESHOLD, PK_EXIT_AT, PK_EXIT_HEAD, PK_ATTEND_METHOD,
		                          PK_QUANTIZE_FORMAT };
	int subj = ir_policy_subject(s);
	for (size_t i = 0; i < sizeof need / sizeof need[0]; i++) {
		const PolicyKeyInfo *ki = &ir_policy_keys[need[i]];
		if (ki->verb == s->verb && (ki->subject < 0 || ki->subject == subj) && !ir_policy_given(s, need[i]))
			return ki->word;
	}
	/* quest's page and budget come together; block_topk needs both of its numbers,
	 * coverage its gamma */
	if (s->verb == POL_ATTEND && s->attend.kind == AK_DECODE &&
	    ir_policy_given(s, PK_ATTEND_PAGE) != ir_policy_given(s, PK_ATTEND_BUDGET))
		return ir_policy_given(s, PK_ATTEND_PAGE) ? "budget" : "page";
	if (s->verb == POL_ATTEND && s->attend.kind == AK_PREFILL && ir_policy_given(s, PK_ATTEND_METHOD)) {
		if (s->attend.method == PM_BLOCK_TOPK && !ir_policy_given(s, PK_ATTEND_BLOCK))
			return "block";
		if (s->attend.method == PM_BLOCK_TOPK && !ir_policy_given(s, PK_ATTEND_TOPK))
			return "topk";
		if (s->attend.method == PM_COVERAGE && !ir_policy_given(s, PK_ATTEND_GAMMA))
			return "gamma";
	}
	return NULL;
}

bool
ir_policy_layers_has(const PolicyLayers *ls, int32_t l)
{
	if (ls->range)
		return l >= ls->lo && l < ls->hi;
	for (uint32_t i = 0; i < ls->n; i++)
		if (ls->list[i] == l)
			return true;
	return false;
}
