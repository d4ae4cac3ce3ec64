"""What a drawn figure shows, for the tests of pictures: titles, axis labels, tick labels,
legend entries and texts, read off the matplotlib Figure the plotting function returned."""

from __future__ import annotations


def titles(fig) -> list[str]:
    """The titles of the axes that have one, in order."""
    return [ax.get_title() for ax in fig.axes if ax.get_title()]


def ylabels(fig) -> list[str]:
    return [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]


def suptitle(fig) -> str:
    return fig.get_suptitle()


def legend_entries(fig) -> list[str]:
    """The entries of the figure's legends and of its axes' legends."""
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [t.get_text() for legend in legends for t in legend.get_texts()]


def xticklabels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def texts(fig) -> list[str]:
    """Free texts drawn in the axes (bar counts, messages)."""
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def images_of(ax) -> list:
    """The arrays the axes show as images (``imshow``), in drawing order."""
    return [image.get_array() for image in ax.get_images()]


def written(path) -> bool:
    """The picture was written as PNG."""
    with open(path, "rb") as fh:
        return fh.read(8) == b"\x89PNG\r\n\x1a\n"
