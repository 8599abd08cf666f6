"""Synthetic data with exact ground truth: cardiac MR exams (:mod:`zeroclick.imaging.synthetic.cmr`) and
whole-slide images (:mod:`zeroclick.imaging.synthetic.slide`)."""
