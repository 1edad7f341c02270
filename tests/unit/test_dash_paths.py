"""A path is never read as an option: commands on a host get `./path` (or `--`), and a
single-file tree whose name holds `[`, `*` or `?` is copied as that one file.

The commands run for real here, in a temporary "home" holding a tree named `-delete`: before,
`find -delete -printf ...` deleted the whole home."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from backup_helpers import LocalRunner, tree_digest

from providers import aside
from providers.commands import path_arg
from providers.rsync import rsync_options
from runbooks import manifest as mf
from runbooks.backup_run import tree_copy_options
from runbooks.connect import one_file_filter
from runbooks.inventory import Tree


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "-delete" / "sub").mkdir(parents=True)
    (tmp_path / "-delete" / "sub" / "a.txt").write_text("alpha")
    (tmp_path / "keep.txt").write_text("the rest of the home")
    (tmp_path / "srv").mkdir()
    (tmp_path / "srv" / "index.html").write_text("site")
    return tmp_path


def everything(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_path_arg_keeps_absolute_paths_and_dots_relative_ones() -> None:
    assert [path_arg(p) for p in ("/srv/www", "srv/www", "-delete", "a b")] == [
        "/srv/www",
        "./srv/www",
        "./-delete",
        "./a b",
    ]


def test_find_commands_take_the_path_as_a_path(home: Path) -> None:
    assert aside.mtime_argv("-delete") == ["find", "./-delete", "-maxdepth", "0", "-printf", "%T@"]
    assert mf.tree_stats_argv("-delete")[-1] == "./-delete"
    assert aside.listing_argv("-delete")[-1] == "./-delete"
    before = everything(home)
    runner = LocalRunner("production", home)

    listing = aside.parse_listing(runner.run(aside.listing_argv("-delete")).stdout)
    stats = mf.parse_tree_stats(runner.run(mf.tree_stats_argv("-delete")).stdout)
    mtime = runner.run(aside.mtime_argv("-delete")).stdout

    assert everything(home) == before  # nothing deleted
    assert (listing.entries, stats) == (3, tree_digest(home / "-delete"))
    assert float(mtime) > 0


def test_other_commands_take_a_dash_path_as_a_path(home: Path) -> None:
    runner = LocalRunner("backup-even", home)
    (home / "-area" / "app" / "20261129T020000Z-daily").mkdir(parents=True)
    (home / "-m.json").write_text("old")

    sets = runner.run(mf.list_sets_argv("-area")).stdout
    stats = mf.parse_file_stats(runner.run(mf.file_stats_argv(["-m.json"])).stdout)
    runner.run(mf.write_file_atomically_argv("-m.json"), stdin="new")

    assert sets == "app/20261129T020000Z-daily\t\n"  # `cd -area` failed: no set was listed
    assert stats["-m.json"] is not None and stats["-m.json"][0] == 3
    assert (home / "-m.json").read_text() == "new"


@pytest.mark.parametrize(
    ("name", "include"),
    [
        ("report.pdf", "/report.pdf"),
        ("report[1].pdf", "/report\\[1].pdf"),
        ("all*.conf", "/all\\*.conf"),
        ("who?.txt", "/who\\?.txt"),
        ("back\\slash[x]", "/back\\\\slash\\[x]"),
        ("back\\slash", "/back\\slash"),  # no wildcard: rsync takes the backslash literally
    ],
)
def test_one_file_filter_escapes_wildcards(name: str, include: str) -> None:
    assert one_file_filter(name) == ((include,), ("*",))


def test_single_file_tree_options_match_only_that_file() -> None:
    options = tree_copy_options(
        Tree(path="etc/app[1].conf"), link_dest=None, only_name="app[1].conf"
    )
    argv = rsync_options(options)
    assert [a for a in argv if a.startswith(("--include", "--exclude"))] == [
        "--include=/app\\[1].conf",
        "--exclude=*",
    ]
    assert (options.delete, options.includes, options.excludes) == (
        True,
        ("/app\\[1].conf",),
        ("*",),
    )


@pytest.mark.parametrize("name", ["app[1].conf", "all*.conf", "who?.conf", "plain.conf"])
def test_rsync_copies_exactly_the_one_file(name: str, tmp_path: Path) -> None:
    source, dest = tmp_path / "src", tmp_path / "dst"
    source.mkdir()
    dest.mkdir()
    for other in (name, "app1.conf", "allx.conf", "whox.conf", "plain.conf", "z"):
        (source / other).write_text(f"content of {other}")
    options = tree_copy_options(Tree(path=name), link_dest=None, only_name=name)

    subprocess.run(["rsync", *rsync_options(options), f"{source}/", f"{dest}/"], check=True)

    assert everything(dest) == [name]
    assert (dest / name).read_text() == f"content of {name}"
