"""Author-year labels for the bibliography page, matching the author-year citations in the text.

sphinxcontrib-bibtex cites as "Grenioux et al. [2023]" (``bibtex_reference_style: author_year``) but labels
the bibliography with pybtex's formatting style, whose labels are alphabetic ("[GMG23]"). This style keeps
pybtex's ``unsrt`` formatting, which links an entry's ``doi`` and ``eprint`` (arXiv) fields, and labels every
entry "Grenioux et al., 2023" as the citations do.
"""

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


class AuthorYearLabelStyle(BaseLabelStyle):
    """"Surname, year", "Surname and Surname, year" or "Surname et al., year"; a, b, ... where labels repeat."""

    def format_labels(self, sorted_entries):
        labels = [self.format_label(entry) for entry in sorted_entries]
        for i, label in enumerate(labels):
            if labels.count(label) > 1:
                label += "abcdefghijklmnopqrstuvwxyz"[labels[:i].count(label)]
            yield label

    @staticmethod
    def format_label(entry) -> str:
        persons = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in persons]
        if len(names) > 2:
            authors = f"{names[0]} et al."
        else:
            authors = " and ".join(names)
        return f"{authors}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entries (with DOI and arXiv links) under author-year labels."""

    default_label_style = AuthorYearLabelStyle


def setup(app):
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
