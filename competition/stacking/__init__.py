"""Second-level models over the first level's predictions: the out-of-fold
store, blends of experiments, and the stacking stage (gradient boosting
over tabular metadata, patient-relative features and image-model
predictions)."""
