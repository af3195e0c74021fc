/* policy_model.h - a seeded random Llama (randmodel.h) with a policy, through the front
 * end and the default pass pipeline, as `elide compile` and `elide run` see it, and
 * what the tests of the adaptive-compute passes (early exit, layer skipping) share
 * around it: the shape, the tokens fed, a dense model paired with the policy's, and
 * the interpreter's step runner over the pair.  The functions that return a value
 * assert (Criterion) instead of failing. */
#ifndef ELIDE_TESTS_POLICY_MODEL_H
#define ELIDE_TESTS_POLICY_MODEL_H

#include <stdbool.h>

#include "ir/ir.h"
#include "tests/support/randmodel.h"

#define TP_NSTEP 64 /* positions a sequence of the tests runs */
#define TP_VOCAB 64 /* vocabulary of the tests' models */

/* The model of config c as `llama` with `policy p { policy_body }` attached (none when
 * the body is empty), its weights loaded from `weights`, the default pipeline run
 * and the result verified.  NULL after printing the diagnostics on stderr; the
 * warnings of the load and the pipeline are counted in *nwarnings (may be NULL). */
Module *tp_load(const RmConfig *c, const char *weights, const char *policy_body, int *nwarnings);
/* tp_load with the passes `skip` names (comma list; NULL: none) left out of the pipeline. */
Module *tp_load_skip(const RmConfig *c, const char *weights, const char *policy_body, const char *skip,
                     int *nwarnings);

/* tp_load that asserts the module loads, and with `no_warnings` that nothing was
 * warned (a statement not applied warns). */
Module *tp_load_ok(const RmConfig *c, const char *weights, const char *policy_body, bool no_warnings);

/* The tests' shape: dim 32, 4 heads, FFN 48, vocabulary TP_VOCAB, context TP_NSTEP + 8. */
RmConfig tp_config(int layers, int kv_heads, uint64_t seed);

/* Writes c's weights to BUILD/PREFIX_KVHEADS_SEED_PID.safetensors (tests run in
 * parallel); the path (a static buffer, valid until the next call). */
const char *tp_write_weights(const RmConfig *c, const char *prefix);

/* The token fed at position t. */
int32_t tp_token(int t);

/* Whether x[0..n) holds a NaN. */
bool tp_has_nan(const float *x, int n);

/* Writes BUILD/NAME, a calibration file of 96 token ids (for the router); its path
 * (a static buffer). */
const char *tp_write_calib(const char *name);

/* The dense model and the same weights under a policy, interpreted side by side. */
typedef struct TpPair {
	Module *dense;  /* no policy */
	Module *policy; /* the policy's statements applied */
	RmConfig c;
} TpPair;

/* The pair of tp_config(layers, kv_heads, seed) with policy_body (tp_load_ok). */
TpPair tp_pair(int layers, int kv_heads, uint64_t seed, const char *policy_body, bool no_warnings);
void tp_pair_free(TpPair *p);

/* Runs both modules of p through the interpreter: a prefill of np tokens (none when
 * 0), then steps to TP_NSTEP; with `same` the logits must match bit for bit; the
 * policy module's caches are NaN-poisoned with `poison`; layers[t] (may be NULL)
 * receives the layers it ran at step t.  Returns the calls whose logits held a NaN in
 * the policy module; its state is kept in *keep (may be NULL), else freed. */
int tp_run_seq(TpPair *p, int np, bool same, bool poison, int64_t *layers, InterpState **keep);

#endif
