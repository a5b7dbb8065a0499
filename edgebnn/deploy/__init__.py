"""Deployment: conversion to TFLite, re-verification, and the TF-free device runner.

This package's ``__init__`` imports nothing heavy, so that ``edgebnn.deploy.device``
can run on a device that has only NumPy and a TFLite interpreter.
"""
