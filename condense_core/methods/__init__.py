"""The condensation and selection methods, one module each; every class registers itself by kind
and name (`registration.register`), and the registry imports every module here when first asked.
A new method is one new file in this folder."""
