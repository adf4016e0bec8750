"""The recipes and published tables shipped with unlearnkit, installed as package data so that
``unlearnkit sweep NAME`` and ``unlearnkit reproduce TABLE`` work from a wheel as from a clone."""
