from django import template

register = template.Library()


@register.filter
def get(mapping, key):
    """mapping[key] in a template, for per-arm columns."""
    return mapping.get(key, "")
