/* policy_model.h - a seeded random Llama (randmodel.h) with a policy, through the front
 * end and the default pass pipeline, as `elide compile` and `elide run` see it: the
 * loader the tests of the adaptive-compute passes share. */
#ifndef ELIDE_TESTS_POLICY_MODEL_H
#define ELIDE_TESTS_POLICY_MODEL_H

#include "ir/ir.h"
#include "tests/support/randmodel.h"

/* The model of config c as `llama` with `policy p { policy_body }` attached (none when
 * the body is empty), its weights loaded from `weights`, the default pipeline run
 * and the result verified.  NULL after printing the diagnostics on stderr; the
 * warnings of the load and the pipeline are counted in *nwarnings (may be NULL). */
Module *tp_load(const RmConfig *c, const char *weights, const char *policy_body, int *nwarnings);

#endif
