"""Localise, then classify: a study's series routed by kind, a keypoint
localiser per kind trained from the coordinates CSV, crops in millimetres
around its points, and a crop classifier per kind (the stages:
competition.pipeline.localise and competition.pipeline.classify)."""
