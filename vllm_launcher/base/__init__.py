"""The ground floor: errors, paths, units, safe text, files and atomic writes, inputs, output."""
