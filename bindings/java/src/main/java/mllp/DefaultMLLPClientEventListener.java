package mllp;

/**
 * An {@link MLLPClientEventListener} whose methods do nothing (they already do by default: this
 * class is there for symmetry with {@link DefaultMLLPServerEventListener}).
 */
public class DefaultMLLPClientEventListener implements MLLPClientEventListener {}
