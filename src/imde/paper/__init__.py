"""The paper's reproduction, apart from the library: ``imde study`` (config, steps, runner, parallel training),
the claims measured on its results, the figures and the HTML report."""
