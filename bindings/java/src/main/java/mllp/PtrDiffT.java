package mllp;

import com.sun.jna.IntegerType;
import com.sun.jna.Native;

/** C {@code ptrdiff_t} (signed, pointer-sized). Internal to the binding; public only because JNA instantiates it. */
public final class PtrDiffT extends IntegerType {
    private static final long serialVersionUID = 1L;

    public PtrDiffT() {
        this(0);
    }

    public PtrDiffT(long value) {
        super(Native.POINTER_SIZE, value, false);
    }
}
