"""Words the registries, the runner and the page share, in a module light enough for `simstress --help`."""

# The three task categories, in display order, with what the ideal metric does in each (shown on the leaderboard).
CATEGORIES = {
    "robustness": "the task applies a change that preserves what the network computes (outlier shift, "
                  "separable class translation, invertible linear map, ...); the ideal metric keeps the "
                  "similarity at self-similarity",
    "sensitivity": "the task applies a change that alters what the network computes (noise, principal-component "
                   "deletion, independent data, ...); the ideal metric's similarity falls, in the order of the "
                   "damage",
    "specificity": "the right pair must win (e.g. the corresponding layer across seeds or training recipes)",
}
SCALES = ("smoke", "default", "full")
# What a task's cases are made of, for the rankings on one kind of data alone (shown beside the headline).
DATA = {"synthetic": "synthetic data with a known structure", "trained": "networks simstress trains itself",
        "pretrained": "pretrained ImageNet models"}
