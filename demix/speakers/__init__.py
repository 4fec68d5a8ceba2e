"""Who (or what) each separated source is: enrol labelled examples, then label sources.

``features``  MFCC windows of the audible parts of a clip (silent windows are dropped).
``model``     the model file (npz arrays + JSON metadata, never pickle) and its numpy forward pass.
``enrol``     a labelled folder → cross-validated classifier and novelty gate → model file.
``label``     files → probabilities per label → joint (Hungarian) assignment per run folder.
``rename``    renames a run folder's sources to their labels and updates its manifest.

librosa and scikit-learn are imported inside the functions that need them.
"""
