/* SVG latency percentile plot (latency_plot.h). */
#include "latency_plot.h"

#include <math.h>

#define W 900
#define H 540
#define LEFT 90
#define RIGHT 200
#define TOP 50
#define BOTTOM 70

static const char *colors[] = {"#000000", "#1f77b4", "#ff7f0e", "#2ca02c",
			       "#d62728", "#9467bd", "#8c564b", "#e377c2"};

/* x: log10(1/(1-p)) from 0 (p = 0) to 5 (p = 99.999%). */
static double px(double p)
{
	double x = log10(1.0 / (1.0 - p / 100.0));
	if (x > 5)
		x = 5;
	return LEFT + x / 5.0 * (W - LEFT - RIGHT);
}

static double py(double us, double lo, double hi)
{
	double t = (log10(us) - lo) / (hi - lo);
	return TOP + (1 - t) * (H - TOP - BOTTOM);
}

int plot_latency_svg(FILE *f, const char *title, const struct plot_curve *c, int n)
{
	enum { STEPS = 200 };
	double pts[8][STEPS + 1];
	double vmin = 1e18, vmax = 0;
	if (n > 8)
		n = 8;
	for (int i = 0; i < n; i++)
		for (int k = 0; k <= STEPS; k++) {
			double p = 100.0 * (1.0 - pow(10.0, -5.0 * k / STEPS));
			double us = (double)c[i].percentile(c[i].arg, p) / 1000.0;
			if (us < 0.1)
				us = 0.1;
			pts[i][k] = us;
			if (us < vmin)
				vmin = us;
			if (us > vmax)
				vmax = us;
		}
	if (vmax <= 0)
		vmin = 1, vmax = 10;
	double lo = floor(log10(vmin)), hi = ceil(log10(vmax));
	if (hi <= lo)
		hi = lo + 1;
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
		"viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"13\">\n",
		W, H, W, H);
	fprintf(f, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n");
	fprintf(f, "<text x=\"%d\" y=\"28\" font-size=\"16\" font-weight=\"bold\">%s</text>\n",
		LEFT, title);
	/* Grid and axes. */
	static const char *xl[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
	for (int d = 0; d <= 5; d++) {
		double x = LEFT + d / 5.0 * (W - LEFT - RIGHT);
		fprintf(f, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#ddd\"/>\n",
			x, TOP, x, H - BOTTOM);
		fprintf(f, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", x,
			H - BOTTOM + 20, xl[d]);
	}
	for (double e = lo; e <= hi + 1e-9; e += 1) {
		double y = py(pow(10, e), lo, hi);
		fprintf(f, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
			LEFT, y, W - RIGHT, y);
		double v = pow(10, e);
		if (v >= 1000)
			fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g ms</text>\n",
				LEFT - 8, y + 4, v / 1000);
		else
			fprintf(f, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g us</text>\n",
				LEFT - 8, y + 4, v);
	}
	fprintf(f,
		"<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" "
		"stroke=\"#333\"/>\n",
		LEFT, TOP, W - LEFT - RIGHT, H - TOP - BOTTOM);
	fprintf(f,
		"<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">percentile "
		"(log scale of 1/(1-p))</text>\n",
		LEFT + (W - LEFT - RIGHT) / 2, H - 25);
	fprintf(f,
		"<text transform=\"translate(22,%d) rotate(-90)\" text-anchor=\"middle\">"
		"latency (log scale)</text>\n",
		TOP + (H - TOP - BOTTOM) / 2);
	/* Curves and legend. */
	for (int i = 0; i < n; i++) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%s\" points=\"",
			colors[i], i == 0 ? "2.5" : "1.5");
		for (int k = 0; k <= STEPS; k++) {
			double p = 100.0 * (1.0 - pow(10.0, -5.0 * k / STEPS));
			fprintf(f, "%.1f,%.1f ", px(p), py(pts[i][k], lo, hi));
		}
		fprintf(f, "\"/>\n");
		int ly = TOP + 10 + i * 22;
		fprintf(f,
			"<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"%s\" "
			"stroke-width=\"3\"/>\n",
			W - RIGHT + 15, ly, W - RIGHT + 40, ly, colors[i]);
		fprintf(f, "<text x=\"%d\" y=\"%d\">%s</text>\n", W - RIGHT + 46, ly + 4,
			c[i].label);
	}
	fprintf(f, "</svg>\n");
	return ferror(f) ? -1 : 0;
}
