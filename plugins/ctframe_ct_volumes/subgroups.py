"""The subgroup variables a CT series offers (``DataSplits.attributes``): where a model's results may
differ because the images were made differently.

Scanner manufacturer and reconstruction kernel are taken as the header spells them; slice thickness is
put in bands, because each scanner protocol writes its own exact values (0.625, 1, 1.25, ...) and a
subgroup per value would be too small to score. Only allow-listed technical fields are read
(:data:`ctframe_ct_volumes.pseudonym.ALLOWED_FIELDS`): nothing here identifies a person. A NIfTI volume
has no header fields: its values are "(not recorded)", and a variable with one value everywhere is not
broken down (the core leaves it out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

NOT_RECORDED = "(not recorded)"

# Slice thickness bands (mm): thin-section CT (<= 1.5) is what lung reading protocols ask for; thick
# (> 3) is the 5 mm routine reconstruction that blurs small ground-glass opacities.
THICKNESS_BANDS = ((1.5, "<= 1.5 mm"), (3.0, "1.5-3 mm"), (float("inf"), "> 3 mm"))

VARIABLES = {
    "manufacturer": ("Manufacturer", "manufacturer"),
    "kernel": ("ConvolutionKernel", "kernel"),
    "slice_thickness": ("SliceThickness", "slice thickness"),
}
"""Option value -> (the DICOM keyword of :attr:`Volume.technical`, the variable's name in results)."""


def thickness_band(raw: object) -> str:
    try:
        value = float(str(raw).split("\\")[0])
    except (TypeError, ValueError):
        return NOT_RECORDED
    if not value > 0:
        return NOT_RECORDED
    return next(name for upper, name in THICKNESS_BANDS if value <= upper)


def series_values(technical: Mapping[str, object], fields: Iterable[str]) -> dict[str, str]:
    """Variable name -> this series' value, for each chosen field (``technical``: DICOM keyword -> value,
    as :attr:`ctframe_ct_volumes.volumes.Volume.technical` holds them)."""
    values = {}
    for field in fields:
        keyword, variable = VARIABLES[field]
        raw = technical.get(keyword)
        if field == "slice_thickness":
            values[variable] = thickness_band(raw)
        else:
            values[variable] = " ".join(str(raw).split()) if raw else NOT_RECORDED
    return values


def attributes(
    samples: Iterable[tuple[str, Mapping[str, object]]], fields: Iterable[str]
) -> dict[str, dict[str, str]]:
    """Variable -> (sample id -> value) from ``(sample id, its series' technical fields)`` pairs."""
    chosen = list(fields)
    table: dict[str, dict[str, str]] = {VARIABLES[f][1]: {} for f in chosen}
    for sample, technical in samples:
        for variable, value in series_values(technical, chosen).items():
            table[variable][sample] = value
    return table
