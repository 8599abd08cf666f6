"""Synthetic data with exact ground truth: cardiac MR exams (:mod:`imaging.synthetic.cmr`) and
whole-slide images (:mod:`imaging.synthetic.slide`)."""
