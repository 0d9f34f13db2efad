"""A model's settings as a read-only attribute view of its option object."""


def option_view(name: str, doc: str = '') -> property:
    """``model.<attr>`` reading ``model.options.<name>``; assigning to it
    raises (the options are validated once, when the model is built)."""
    return property(lambda self: getattr(self.options, name),
                    doc=doc or f'``options.{name}`` (read-only).')
