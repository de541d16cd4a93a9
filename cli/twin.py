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


from cli.radio import deploy_cmd, show_map_cmd, trace_cmd  # noqa: E402

main.add_command(deploy_cmd)
main.add_command(trace_cmd)
main.add_command(show_map_cmd)

if __name__ == "__main__":
    main()
