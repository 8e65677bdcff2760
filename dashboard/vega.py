"""The Vega, Vega-Lite and vega-embed JavaScript that the page inlines.

vl-convert-python ships these libraries (the versions Altair's Vega-Lite
schema needs) and bundles them into one classic script that defines
``vegaEmbed``; Altair's own offline HTML (``chart.save(..., inline=True)``)
uses the same bundle. It is built once per process (about 4 s) and needs no
network. The page then fetches nothing: no CDN, no font, no schema.
"""

import functools

import altair as alt
from markupsafe import Markup


def vega_lite_version() -> str:
    """Altair's Vega-Lite schema as vl-convert names it ("v6_4")."""
    return "_".join(alt.SCHEMA_VERSION.split(".")[:2])


@functools.lru_cache(maxsize=1)
def script() -> Markup:
    """The bundle, safe to place inside <script> (checked, not escaped)."""
    import vl_convert  # a large native module: loaded only to render

    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version())
    lowered = bundle.lower()
    if "</script" in lowered or "<!--" in lowered:
        raise RuntimeError("the vega-embed bundle cannot be inlined in a <script> element")
    return Markup(bundle)


@functools.lru_cache(maxsize=1)
def versions() -> str:
    import vl_convert
    return (f"Vega {vl_convert.get_vega_version()}, Vega-Lite {alt.SCHEMA_VERSION.lstrip('v')}, "
            f"vega-embed {vl_convert.get_vega_embed_version()}")
