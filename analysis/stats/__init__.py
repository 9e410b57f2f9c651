"""The statistics core of the analysis: results folders read into histograms, and the figures computed from them."""
