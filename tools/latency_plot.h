/* An SVG plot of latency percentile distributions, in the HdrHistogram style. */
#ifndef RL_LATENCY_PLOT_H
#define RL_LATENCY_PLOT_H

#include <stdint.h>
#include <stdio.h>

/* One curve: `percentile(arg, p)` gives the latency in ns at percentile p (0..100). */
struct plot_curve {
	const char *label;
	uint64_t (*percentile)(void *arg, double p);
	void *arg;
};

/* Write an SVG (about 900x540) of the curves: percentile on a log-scaled 1/(1-p)
 * axis from 0% to 99.999%, latency in microseconds on a log axis.  Returns 0 or -1. */
int plot_latency_svg(FILE *out, const char *title, const struct plot_curve *curves, int n);

#endif
