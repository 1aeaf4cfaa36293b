"""The Galaxy Zoo 2 collection's names: answers, table schemas and vector tables.

Both sides need these: the pipeline writes the ``galaxies`` table under these readable column names,
the app reads them back and labels the morphology summary with them. The 37 answers of the GZ2 decision
tree (Willett et al. 2013, table 5) get short names here once, so nobody downstream spells
``t03_bar_a06_bar_debiased``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import pyarrow as pa

#: Collection name used on the command line, in the manifest and in the app.
GZ2: Final = "gz2"

#: Readable answer name → the catalogue's column stem (``<stem>_debiased`` / ``<stem>_flag``).
ANSWERS: Final[dict[str, str]] = {
    "smooth": "t01_smooth_or_features_a01_smooth",
    "features": "t01_smooth_or_features_a02_features_or_disk",
    "star_or_artifact": "t01_smooth_or_features_a03_star_or_artifact",
    "edge_on": "t02_edgeon_a04_yes",
    "not_edge_on": "t02_edgeon_a05_no",
    "bar": "t03_bar_a06_bar",
    "no_bar": "t03_bar_a07_no_bar",
    "spiral": "t04_spiral_a08_spiral",
    "no_spiral": "t04_spiral_a09_no_spiral",
    "bulge_none": "t05_bulge_prominence_a10_no_bulge",
    "bulge_noticeable": "t05_bulge_prominence_a11_just_noticeable",
    "bulge_obvious": "t05_bulge_prominence_a12_obvious",
    "bulge_dominant": "t05_bulge_prominence_a13_dominant",
    "odd": "t06_odd_a14_yes",
    "not_odd": "t06_odd_a15_no",
    "round_completely": "t07_rounded_a16_completely_round",
    "round_in_between": "t07_rounded_a17_in_between",
    "round_cigar": "t07_rounded_a18_cigar_shaped",
    "odd_ring": "t08_odd_feature_a19_ring",
    "odd_lens_or_arc": "t08_odd_feature_a20_lens_or_arc",
    "odd_disturbed": "t08_odd_feature_a21_disturbed",
    "odd_irregular": "t08_odd_feature_a22_irregular",
    "odd_other": "t08_odd_feature_a23_other",
    "odd_merger": "t08_odd_feature_a24_merger",
    "odd_dust_lane": "t08_odd_feature_a38_dust_lane",
    "bulge_shape_rounded": "t09_bulge_shape_a25_rounded",
    "bulge_shape_boxy": "t09_bulge_shape_a26_boxy",
    "bulge_shape_none": "t09_bulge_shape_a27_no_bulge",
    "arms_tight": "t10_arms_winding_a28_tight",
    "arms_medium": "t10_arms_winding_a29_medium",
    "arms_loose": "t10_arms_winding_a30_loose",
    "arms_1": "t11_arms_number_a31_1",
    "arms_2": "t11_arms_number_a32_2",
    "arms_3": "t11_arms_number_a33_3",
    "arms_4": "t11_arms_number_a34_4",
    "arms_more_than_4": "t11_arms_number_a36_more_than_4",
    "arms_cant_tell": "t11_arms_number_a37_cant_tell",
}

#: The fractions summarised for a neighbourhood (the issue's smooth / featured / bar / spiral / odd),
#: with the label shown beside each. Conditional answers (bar, spiral) are shown as debiased fractions
#: *given the question was asked*, as the catalogue reports them.
SUMMARY: Final[dict[str, str]] = {
    "smooth": "Smooth",
    "features": "Featured or disk",
    "bar": "Bar (of those asked)",
    "spiral": "Spiral arms (of those asked)",
    "odd": "Something odd",
}

#: The answers through which the votes reach a conditional SUMMARY question (GZ2's tree: "is there a
#: bar?" and "spiral arms?" are asked of featured galaxies not seen edge-on). Their product is the share
#: of a galaxy's votes that were asked: the weight of its answer in a mean "of those asked".
REACH: Final[dict[str, tuple[str, ...]]] = {"bar": ("features", "not_edge_on"), "spiral": ("features", "not_edge_on")}


def summary_values(column: Callable[[str], Sequence[float]]) -> tuple[np.ndarray, np.ndarray]:
    """The SUMMARY fractions of some galaxies (galaxies × answers) and their weights (1, or the share
    of votes that reached a conditional question: :data:`REACH`), from ``column(answer)``, the galaxies'
    ``p_<answer>`` values. Missing fractions count as 0."""
    values = np.column_stack([np.asarray(column(n), np.float64) for n in SUMMARY])
    weights = np.ones_like(values)
    for j, name in enumerate(SUMMARY):
        for via in REACH.get(name, ()):
            weights[:, j] *= np.asarray(column(via), np.float64)
    return np.nan_to_num(values), np.nan_to_num(weights)


#: Debiased fraction ≥ this makes a galaxy "smooth" or "featured" for the class columns (as in the data README).
CLASS_THRESHOLD: Final = 0.5

GALAXIES: Final = pa.schema(
    [pa.field("objid", pa.string(), nullable=False),  # 19-digit SDSS ids: strings, so JSON keeps every digit
     pa.field("ra", pa.float64(), nullable=False),
     pa.field("dec", pa.float64(), nullable=False),
     pa.field("total_votes", pa.int32()),
     pa.field("total_classifications", pa.int32()),
     pa.field("gz_class", pa.string()),  # smooth / featured / star_or_artifact / uncertain
     pa.field("has_image", pa.bool_(), nullable=False)]
    + [pa.field(f"p_{name}", pa.float32()) for name in ANSWERS]
    + [pa.field(f"flag_{name}", pa.bool_()) for name in ANSWERS]
)

GALAXY_MAPS: Final = pa.schema([
    pa.field("objid", pa.string(), nullable=False),
    pa.field("space", pa.string(), nullable=False),  # "morphology" or "image"
    pa.field("x", pa.float32(), nullable=False),
    pa.field("y", pa.float32(), nullable=False),
    pa.field("cluster", pa.int32()),
    pa.field("cluster_label", pa.string()),
])

#: Vector tables of the collection (their own LanceDB database beside APOD's).
MORPHOLOGY_KIND: Final = "morphology"
IMAGE_KIND: Final = "image"
GALAXY_VECTOR_KINDS: Final = (MORPHOLOGY_KIND, IMAGE_KIND)
GALAXY_SPACES: Final = GALAXY_VECTOR_KINDS

GZ2_LICENCE_NOTE: Final = (
    "Galaxy Zoo 2 classifications: Willett et al. 2013, MNRAS 435, 2835 (Stripe 82 coadd sample, table 5); "
    "please cite it. Galaxy pictures, where present, are SDSS cutouts (credit: Sloan Digital Sky Survey)."
)


def is_objid(text: str) -> bool:
    """A Galaxy Zoo / SDSS objid as the app accepts it: digits only, at most 20 (what reaches SQL
    filters, file names and URLs is checked here, in one place)."""
    return text.isascii() and text.isdigit() and len(text) <= 20  # isdigit alone takes '²' and '٣'


def galaxy_vector_schema(dim: int) -> pa.Schema:
    return pa.schema([pa.field("objid", pa.string(), nullable=False),
                      pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
                      pa.field("ra", pa.float64()), pa.field("dec", pa.float64()),
                      pa.field("gz_class", pa.string()), pa.field("has_image", pa.bool_())])
