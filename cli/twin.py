"""``twin``: build scenes, deploy base stations, trace radio maps, sample corpora."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="radio-twin")
def main() -> None:
    """Radio digital twin: from an OpenStreetMap area to ray-traced radio maps and corpora.

    \b
    Example:
      twin build-scene --out out/helsinki      # the embedded central-Helsinki default
    """


if __name__ == "__main__":
    main()
