/* policy_model.c - tp_load: a random model with a policy through the front end and
 * the default pipeline (policy_model.h). */
#include "tests/support/policy_model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "passes/passes.h"

Module *
tp_load(const RmConfig *c, const char *weights, const char *policy_body, int *nwarnings)
{
	char *model = rm_elide_source(c, "llama");
	size_t n = strlen(model) + strlen(policy_body) + 64;
	char *text = malloc(n);
	snprintf(text, n, "%s\npolicy p for llama {\n  %s\n}\n", model, policy_body);
	free(model);
	Diag d;
	diag_init(&d, stderr);
	Module *m = fe_load_text("policy.elide", text, strlen(text), policy_body[0] ? "p" : NULL, &d);
	free(text);
	if (m && !(ir_load_params(m, weights, &d) && pass_run_default(m, &d) && ir_verify(m, &d))) {
		ir_free_module(m);
		m = NULL;
	}
	if (nwarnings)
		*nwarnings = d.nwarnings;
	return m;
}
