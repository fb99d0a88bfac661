"""Task families. A family builds its world and items; everything downstream sees only items.

The interface a family provides (see biography/ for the reference one):
- `Family(world_cfg, recipe_cfg, seed)`: build the world deterministically;
- `.tasks`, `.levels`: the task and level names its items carry;
- `.train_items(task, n)`, `.test_items(task, level, n, seen_paths)`: lists of item dicts;
- `.biographies(paraphrases)`: plain-text knowledge to inject into the weights;
- `.world_json()`: the world, for export.
"""

from __future__ import annotations


def get_family(name: str):
    if name == "biography":
        from atomic_comp.families.biography import BiographyFamily

        return BiographyFamily
    raise KeyError(name)


FAMILIES = ("biography",)
