"""Help text that reads naturally: no `<bool>` after a flag, usage lines that name arguments plainly,
command lists that wrap whole sentences.

Typer prints a type placeholder beside every option (`--json <bool>`) and
braces around required arguments in the usage line (`{BASE}`); both read as
syntax a user must type. In a group's command list it keeps the line breaks of
a docstring's first paragraph, so a sentence broke where the source broke it.
Every command of `mha` uses these classes instead.
"""


from typing import Any

from typer.core import TyperCommand, TyperGroup


def _plain(params: list[Any]) -> list[Any]:
    # Parameters are told apart by their attributes: Typer vendors its own click.
    for param in params:
        if getattr(param, "is_flag", False):
            param.metavar = ""  # a flag takes no value: show none
        if param.param_type_name == "argument":
            param.display_type_rich = lambda ctx: None  # its metavar (CONFIG, KEY=VALUE, DIR) says it already
    return params


def one_line_summary(help_text: str | None) -> str | None:
    """A docstring's first paragraph as one line, for the command list to wrap at the terminal's width."""
    if not help_text:
        return None
    first_paragraph = help_text.strip().split("\n\n")[0]
    return " ".join(first_paragraph.split())


class PlainHelpGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.short_help = self.short_help or one_line_summary(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))


class PlainHelpCommand(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.short_help = self.short_help or one_line_summary(self.help)

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = param.metavar or (param.name or "").upper()
                if param.nargs != 1 and not name.endswith("..."):
                    name += "..."
                pieces.append(name if param.required else f"[{name}]")
        return pieces
