"""Zero-shot taxonomy: category names with prompt ensembles (the seed's 22 broad APOD categories).

A category's vector is the normalised mean of its prompts' vectors. Prompts are written like APOD
prose rather than "a photo of X", because the offline text model compares against explanations. A JSON
file can replace the taxonomy: ``{"categories": [{"name": "Galaxy", "prompts": ["…", …]}, …]}``.
Where the same word could fit two labels the prompts say which one we mean: **Sun** is the Sun itself
(sunspots, prominences, flares), **Solar** is solar eclipses and transits; **Moon** is the Moon as a
world (its surface, Apollo), **Lunar** is lunar eclipses, phases and moonrises; meteors and meteorites
go with **Asteroid**.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from atlas.hashing import sha1_json

DEFAULT: dict[str, list[str]] = {
    "Galaxy": [
        "a spiral galaxy with dusty arms of stars and star-forming regions",
        "an elliptical galaxy or a pair of colliding, interacting galaxies",
        "a galaxy millions of light-years away in the distant universe",
    ],
    "Nebula": [
        "a glowing nebula of hydrogen gas and dark dust where new stars form",
        "an emission nebula and dark dust clouds in the Milky Way",
        "a planetary nebula of gas shed by a dying Sun-like star",
    ],
    "Star Cluster": [
        "an open star cluster of young bright blue stars",
        "a globular star cluster of hundreds of thousands of ancient stars",
    ],
    "Planet": [
        "the planet Jupiter, Saturn, Venus, Mercury, Uranus or Neptune",
        "a planet of our solar system with its moons, rings and clouds",
        "an exoplanet orbiting another star",
    ],
    "Comet": [
        "a comet with a long tail of gas and dust near the Sun",
        "a bright comet's coma and ion tail in the night sky",
    ],
    "Asteroid": [
        "an asteroid or small rocky body visited by a spacecraft",
        "meteors of a meteor shower streaking across the night sky",
        "a meteorite or an impact crater from a space rock",
    ],
    "Supernova": [
        "a supernova explosion of a massive star",
        "an expanding supernova remnant of shocked gas and a pulsar",
    ],
    "Black Hole": [
        "a black hole whose gravity swallows light",
        "a supermassive black hole with an accretion disk and powerful jets",
    ],
    "Dark Matter": [
        "dark matter in a galaxy cluster mapped by gravitational lensing",
        "invisible dark matter holding galaxies together",
    ],
    "Cosmology": [
        "the cosmic microwave background left over from the Big Bang",
        "the expansion, age and large-scale structure of the universe",
    ],
    "Aurora": [
        "an aurora, the northern lights glowing green and red in the night sky",
        "auroral curtains caused by the solar wind hitting the upper atmosphere",
    ],
    "Rocket Launch": [
        "a rocket launching into space from a launch pad",
        "a space shuttle launch trailing smoke and fire",
    ],
    "Satellite": [
        "the International Space Station orbiting Earth",
        "an artificial satellite or space telescope in orbit",
        "a robotic space probe spacecraft exploring the solar system",
    ],
    "Mars Rover": [
        "a rover driving on the rocky surface of Mars",
        "a Mars rover's panorama of Martian rocks, dunes and craters",
    ],
    "Sun": [
        "the Sun's surface with sunspots, prominences and solar flares",
        "our Sun, the active solar disk seen by a solar observatory",
    ],
    "Moon": [
        "the cratered surface of Earth's Moon",
        "astronauts exploring the Moon during the Apollo missions",
    ],
    "Earth/Atmospheric": [
        "planet Earth seen from orbit",
        "clouds, lightning, rainbows, halos and other phenomena of Earth's atmosphere",
        "a landscape and the night sky over mountains, trees and a horizon",
    ],
    "Solar": [
        "a total solar eclipse revealing the Sun's corona",
        "the Moon or a planet passing in front of the Sun in a transit or eclipse",
    ],
    "Lunar": [
        "a total lunar eclipse turning the full Moon red",
        "the phases of the Moon, a crescent Moon or a moonrise",
    ],
    "Human Activity": [
        "astronauts working in space or people watching the sky",
        "a large telescope and observatory built by people",
    ],
    "Diagram/Illustration": [
        "an artist's illustration or concept drawing",
        "a diagram, chart, map or simulation explaining an idea",
    ],
    "Composite/Technical": [
        "a composite image combining X-ray, infrared, optical and radio data",
        "a false-color multi-wavelength image from telescope data",
        "a time-lapse, star trail or stacked multi-exposure image",
    ],
}

#: Templates that turn a prompt into a caption for CLIP's image tower.
IMAGE_TEMPLATES = ("an astronomy picture of {}", "a photo of {}")


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, list[str]]
    source: str

    @property
    def names(self) -> list[str]:
        return list(self.categories)

    def fingerprint(self) -> str:
        return sha1_json(self.categories)[:16]


def load(path: Path | None) -> Taxonomy:
    if path is None:
        return Taxonomy(DEFAULT, "default (22 seed categories)")
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read taxonomy file {path}: {exc}") from exc
    items = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(items, list) or len(items) < 2:
        raise ValueError(f"taxonomy file {path}: expected {{'categories': [{{'name': …, 'prompts': […]}}, …]}} with ≥ 2 categories")
    categories: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else None
        prompts = item.get("prompts", [name]) if isinstance(item, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"taxonomy file {path}: category #{i + 1} has no name")
        if "," in name:  # the API, the CLI and the pages' links list categories separated by commas
            raise ValueError(f"taxonomy file {path}: category {name!r} has a comma; name it without one")
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
            raise ValueError(f"taxonomy file {path}: category {name!r} needs a non-empty list of prompt strings")
        if name in categories:
            raise ValueError(f"taxonomy file {path}: category {name!r} appears twice")
        categories[name] = prompts
    return Taxonomy(categories, str(path))
