"""The bundled demo workload and the example mesh."""
