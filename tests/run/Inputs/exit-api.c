/* exit-api.c - uses every knob and stat declaration of the header generated for
 * exit-site.eir; exit-compile.test compiles it with warnings as errors. */
#include <stdio.h>

#include "exitm.h"

int
main(int argc, char **argv)
{
	exitm_ctx *c = exitm_create();
	if (argc < 2 || !c || exitm_load_weights(c, argv[1]) != EXITM_OK)
		return 1;
	if (exitm_set_knob(c, EXITM_KNOB_EXIT_THRESHOLD, 0.02) != EXITM_OK)
		return 1;
	printf("%s = %g of %d knobs\n", exitm_knob_name(EXITM_KNOB_EXIT_THRESHOLD),
	       exitm_get_knob(c, EXITM_KNOB_EXIT_THRESHOLD), EXITM_NKNOBS);
	float out[EXITM_step_OUT];
	for (int p = 0; p < 4; p++)
		if (exitm_step(c, p + 1, p, out) != EXITM_OK)
			return 1;
	exitm_stats st;
	exitm_get_stats(c, &st);
	printf("layers %llu, %s %lld, %s %lld of %d slots\n", (unsigned long long)st.layers_run,
	       exitm_stat_name(EXITM_STAT_EXIT_SITE1), (long long)exitm_stat(c, EXITM_STAT_EXIT_SITE1),
	       exitm_stat_name(EXITM_STAT_KV_ONLY_LAYERS), (long long)exitm_stat(c, EXITM_STAT_KV_ONLY_LAYERS),
	       EXITM_NSTATS);
	exitm_destroy(c);
	return 0;
}
